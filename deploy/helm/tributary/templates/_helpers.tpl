{{/* Name prefix of every object: <release>-tributary, or the release name when it already says tributary. */}}
{{- define "tributary.fullname" -}}
{{- if contains "tributary" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tributary" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tributary.labels" -}}
app.kubernetes.io/name: tributary
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tributary.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tributary.coordinatorEndpoint" -}}
{{- if .Values.worker.coordinatorEndpoint -}}
{{ .Values.worker.coordinatorEndpoint }}
{{- else -}}
tcp://{{ include "tributary.fullname" . }}-coordinator:{{ .Values.coordinator.ports.zmq }}
{{- end -}}
{{- end -}}

#!/usr/bin/env python3
"""Checks the rendered Kustomize outputs of deploy/kubernetes (driven by kubernetes_test.sh).

  kubernetes_check.py --tributary BIN --kubernetes-version 1.30 --work DIR --repo ROOT RENDERED.yaml...

Every document must pass kubernetes-validate in strict mode (unknown fields fail). Then, per rendering:
the daemon configs embedded in the ConfigMaps are run through `tributary ... config` with the exact container
args (downward-API variables filled in), and the effective values must agree with the manifests: data_dir
is the PVC mount, key files are in Secret mounts, ports are the containerPorts the probes and Services use.
Controls at the end prove the checks fail on broken input. Prints one line per problem; exit 1 if any.
"""
import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
SAMPLE_POD_IP = "10.244.3.17"


def load_rendering(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def kind_name(doc):
    return "%s/%s" % (doc["kind"], doc["metadata"]["name"])


def schema_problems(docs, version):
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top)"
            problems.append("%s: %s: %s" % (kind_name(doc), where, e.message))
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append("%s: %s" % (kind_name(doc), e.message))
    return problems


def find(docs, kind, component):
    return [d for d in docs if d["kind"] == kind and d["metadata"].get("labels", {}).get(LABEL_COMPONENT) == component]


def only(docs, kind, component, problems):
    found = find(docs, kind, component)
    if len(found) != 1:
        problems.append("expected one %s with %s=%s, found %d" % (kind, LABEL_COMPONENT, component, len(found)))
        return None
    return found[0]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


# --- running the daemon's config loader on what a pod would see ---------------------------------------------


def mounted_file(pod_spec, container, path, docs):
    """The content of `path` inside the container when a ConfigMap provides it, else None."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "configMap" not in volume:
            continue
        if mount.get("subPath"):
            if mount["mountPath"] != path:
                continue
            key = mount["subPath"]
        elif os.path.dirname(path) == mount["mountPath"].rstrip("/"):
            key = os.path.basename(path)
        else:
            continue
        for doc in docs:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == volume["configMap"]["name"]:
                return doc.get("data", {}).get(key)
    return None


def env_values(container):
    """Sample values for the container's downward-API variables, as the kubelet would fill them in."""
    values = {}
    for env in container.get("env", []):
        source = env.get("valueFrom", {})
        if "value" in env:
            values[env["name"]] = env["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
            values[env["name"]] = SAMPLE_POD_IP
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, resource = ref["resource"].split(".", 1)
            quantity = container.get("resources", {}).get(kind, {}).get(resource)
            if resource == "cpu" and quantity is not None and str(ref.get("divisor", "1")) == "1":
                text = str(quantity)
                cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
                values[env["name"]] = str(math.ceil(cores))  # the kubelet rounds up to the divisor
    return values


def expand(arg, values, problems, where):
    def substitute(match):
        if match.group(1) not in values:
            problems.append("%s: $(%s) has no env value the kubelet could fill in" % (where, match.group(1)))
            return match.group(0)
        return values[match.group(1)]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, arg)


def effective_config(tributary, args, docs, pod_spec, container, work, problems, where):
    """Runs `tributary ARGS config` where ARGS are the container's global flags; returns {key: value}."""
    values = env_values(container)
    args = [expand(a, values, problems, where) for a in args]
    if not args or args[-1] not in ("coordinator", "worker"):
        problems.append("%s: args must end with the daemon command, got %s" % (where, args))
        return None
    flags = args[:-1]
    for i, arg in enumerate(flags):
        if arg == "--config" and i + 1 < len(flags):
            text = mounted_file(pod_spec, container, flags[i + 1], docs)
            if text is None:
                problems.append("%s: --config %s is not provided by a ConfigMap mount" % (where, flags[i + 1]))
                return None
            local = os.path.join(work, where.replace("/", "_") + "_" + os.path.basename(flags[i + 1]))
            with open(local, "w") as f:
                f.write(text)
            flags[i + 1] = local
    run = subprocess.run([tributary] + flags + ["config"], capture_output=True, text=True)
    if run.returncode != 0:
        problems.append("%s: the daemon rejects its config (exit %d): %s" % (where, run.returncode, run.stderr.strip()))
        return None
    return parse_config_listing(run.stdout)


def parse_config_listing(text):
    """`tributary config` prints `key: JSON-VALUE  # origin` per line."""
    config = {}
    for line in text.splitlines():
        key, _, rest = line.partition(": ")
        value, _, _ = rest.rpartition("  # ")
        config[key] = json.loads(value)
    return config


# --- what a pod spec must provide for its effective config ---------------------------------------------------


def mount_for(container, path):
    """The volumeMount holding `path` (the longest mountPath prefix)."""
    best = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if (path == root or path.startswith(root + "/")) and (best is None or len(root) > len(best["mountPath"])):
            best = mount
    return best


def check_secret_file(pod_spec, container, key, path, problems, where):
    mount = mount_for(container, path)
    volume = next((v for v in pod_spec.get("volumes", []) if mount and v["name"] == mount["name"]), {})
    if "secret" not in volume:
        problems.append("%s: %s=%s is not in a Secret mount" % (where, key, path))
        return
    relative = os.path.relpath(path, mount["mountPath"])
    items = volume["secret"].get("items")
    item = next((i for i in items or [] if i["path"] == relative), None)
    if items is not None and item is None:
        problems.append("%s: %s=%s: Secret %s projects no file %s" %
                        (where, key, path, volume["secret"]["secretName"], relative))
    # Secret files are owned by root and, with fsGroup, by that group: a non-root daemon reads through either.
    mode = (item or {}).get("mode", volume["secret"].get("defaultMode", 0o644))
    has_group = "fsGroup" in pod_spec.get("securityContext", {})
    if not (mode & 0o004 or (mode & 0o040 and has_group)):
        problems.append("%s: %s=%s: mode %o with%s fsGroup is not readable by the daemon's user" %
                        (where, key, path, mode, "" if has_group else "out"))


def container_port(container, name_or_number):
    for port in container.get("ports", []):
        if name_or_number in (port.get("name"), port["containerPort"]):
            return port["containerPort"]
    return None


def endpoint_port(endpoint):
    match = re.search(r":(\d+)$", endpoint)
    return int(match.group(1)) if match else None


def check_pod(where, pod_spec, claim_templates, problems):
    """Hardening, resources, and volumes that are well formed and used consistently."""
    pod_security = pod_spec.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True:
        problems.append("%s: securityContext.runAsNonRoot must be true" % where)
    if pod_spec.get("automountServiceAccountToken") is not False:
        problems.append("%s: the daemons do not use the API: automountServiceAccountToken must be false" % where)
    for c in pod_spec["containers"]:
        security = c.get("securityContext", {})
        if security.get("readOnlyRootFilesystem") is not True or security.get("allowPrivilegeEscalation") is not False:
            problems.append("%s/%s: needs readOnlyRootFilesystem true and allowPrivilegeEscalation false" %
                            (where, c["name"]))
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append("%s/%s: capabilities must drop ALL" % (where, c["name"]))
        requests = c.get("resources", {}).get("requests", {})
        if "cpu" not in requests or "memory" not in requests or "memory" not in c["resources"].get("limits", {}):
            problems.append("%s/%s: needs cpu and memory requests and a memory limit" % (where, c["name"]))
    volumes = pod_spec.get("volumes", [])
    for volume in volumes:
        if len(volume) != 2:  # the name and exactly one source
            problems.append("%s: volume %s has %d sources" % (where, volume["name"], len(volume) - 1))
    names = {v["name"] for v in volumes}
    for c in pod_spec["containers"]:
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in names and mount["name"] not in claim_templates:
                problems.append("%s/%s: mount %s names no volume" % (where, c["name"], mount["name"]))


def systemd_stop_timeout(repo, unit):
    with open(os.path.join(repo, "deploy/systemd", unit)) as f:
        match = re.search(r"^TimeoutStopSec=(\d+)$", f.read(), re.M)
    return int(match.group(1)) if match else None


# --- the coordinator and the workers -------------------------------------------------------------------------


def check_probe(container, probe_name, path, http_port, problems, where):
    probe = container.get(probe_name, {}).get("httpGet", {})
    if probe.get("path") != path or container_port(container, probe.get("port")) != http_port:
        problems.append("%s: %s must be GET %s on the HTTP port %s (coordinator.http_listen), got %s" %
                        (where, probe_name, path, http_port, probe or "none"))


def check_coordinator(docs, tributary, work, repo, problems):
    sts = only(docs, "StatefulSet", "coordinator", problems)
    if sts is None:
        return
    where = kind_name(sts)
    spec, pod_spec = sts["spec"], sts["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    if spec.get("replicas") != 1:
        problems.append("%s: one replica (the store has one writer), got %s" % (where, spec.get("replicas")))
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    check_pod(where, pod_spec, set(claims), problems)
    config = effective_config(tributary, container.get("command", [])[1:] + container.get("args", []), docs,
                              pod_spec, container, work, problems, where)
    if config is None:
        return
    data_dir = config["coordinator.data_dir"]
    data_mount = mount_for(container, data_dir)
    if data_mount is None or data_mount["name"] not in claims or data_mount["mountPath"] != data_dir:
        problems.append("%s: coordinator.data_dir %s must be the mount of a volumeClaimTemplate (have %s)" %
                        (where, data_dir, sorted(claims)))
    if config["coordinator.insecure"]:
        problems.append("%s: coordinator.insecure must stay false (CURVE on)" % where)
    for key in ("coordinator.secret_key", "coordinator.allowed_keys"):
        check_secret_file(pod_spec, container, key, config[key], problems, where)
    http = config["coordinator.http_listen"]
    http_port = endpoint_port(http)
    if http.startswith("127.") or http.startswith("localhost"):
        problems.append("%s: coordinator.http_listen %s is loopback: the kubelet's probes cannot reach it" %
                        (where, http))
    if container_port(container, http_port) is None:
        problems.append("%s: no containerPort %s for coordinator.http_listen" % (where, http_port))
    zmq_port = endpoint_port(config["coordinator.listen"])
    if container_port(container, zmq_port) is None:
        problems.append("%s: no containerPort %s for coordinator.listen" % (where, zmq_port))
    check_probe(container, "livenessProbe", "/healthz", http_port, problems, where)
    check_probe(container, "readinessProbe", "/readyz", http_port, problems, where)
    check_services(docs, sts, container, zmq_port, http_port, problems)
    stop = systemd_stop_timeout(repo, "tributary-coordinator.service")
    if pod_spec.get("terminationGracePeriodSeconds") != stop:
        problems.append("%s: terminationGracePeriodSeconds %s != the coordinator unit's TimeoutStopSec %s" %
                        (where, pod_spec.get("terminationGracePeriodSeconds"), stop))


def check_services(docs, sts, container, zmq_port, http_port, problems):
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    services = [d for d in docs if d["kind"] == "Service" and selects(d["spec"].get("selector", {}), pod_labels)]
    governing = [s for s in services if s["metadata"]["name"] == sts["spec"]["serviceName"]]
    if not governing or governing[0]["spec"].get("clusterIP") != "None":
        problems.append("%s: serviceName %s must be a headless Service selecting its pods" %
                        (kind_name(sts), sts["spec"]["serviceName"]))
    elif zmq_port not in [container_port(container, p["targetPort"]) for p in governing[0]["spec"]["ports"]]:
        problems.append("%s: the headless Service does not expose the ZeroMQ port %s" % (kind_name(sts), zmq_port))
    http_services = [s for s in services if s["spec"].get("clusterIP") != "None" and http_port in
                     [container_port(container, p["targetPort"]) for p in s["spec"]["ports"]]]
    if len(http_services) != 1:
        problems.append("%s: expected one ClusterIP Service for the HTTP port %s, found %d" %
                        (kind_name(sts), http_port, len(http_services)))


def check_worker(docs, tributary, work, repo, problems):
    workers = find(docs, "Deployment", "worker") + find(docs, "DaemonSet", "worker")
    if len(workers) != 1:
        problems.append("expected one worker Deployment or DaemonSet, found %d" % len(workers))
        return
    where = kind_name(workers[0])
    pod_spec = workers[0]["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    check_pod(where, pod_spec, set(), problems)
    config = effective_config(tributary, container.get("command", [])[1:] + container.get("args", []), docs,
                              pod_spec, container, work, problems, where)
    if config is None:
        return
    if config["worker.insecure"]:
        problems.append("%s: worker.insecure must stay false (CURVE on)" % where)
    for key in ("worker.secret_key", "worker.coordinator_key"):
        check_secret_file(pod_spec, container, key, config[key], problems, where)
    if config["worker.island_address"] != SAMPLE_POD_IP:
        problems.append("%s: worker.island_address must be the pod IP (downward API), got %s" %
                        (where, config["worker.island_address"]))
    if config["worker.threads"] < 1:
        problems.append("%s: worker.threads %s means every core of the node; set it from the CPU request" %
                        (where, config["worker.threads"]))
    for entry in config["worker.data"]:
        mount = mount_for(container, entry.split("=", 1)[1])
        if mount is None or not mount.get("readOnly"):
            problems.append("%s: dataset %s is not on a read-only mount" % (where, entry))
    check_worker_endpoint(docs, config["worker.coordinator"], problems, where)
    stop = systemd_stop_timeout(repo, "tributary-worker@.service")
    if pod_spec.get("terminationGracePeriodSeconds") != stop:
        problems.append("%s: terminationGracePeriodSeconds %s != the worker unit's TimeoutStopSec %s" %
                        (where, pod_spec.get("terminationGracePeriodSeconds"), stop))


def check_worker_endpoint(docs, endpoint, problems, where):
    match = re.match(r"^tcp://([^:.]+)[^:]*:(\d+)$", endpoint)
    sts = find(docs, "StatefulSet", "coordinator")
    if not match or not sts:
        problems.append("%s: worker.coordinator %s is not tcp://SERVICE:PORT" % (where, endpoint))
        return
    service = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == match.group(1)), None)
    coordinator = sts[0]["spec"]["template"]["spec"]["containers"][0]
    ports = [container_port(coordinator, p["targetPort"]) for p in service["spec"]["ports"] if
             p["port"] == int(match.group(2))] if service else []
    if service is None or ports != [container_port(coordinator, "zmq")]:
        problems.append("%s: worker.coordinator %s does not reach the coordinator's ZeroMQ port" % (where, endpoint))


def check_budgets(docs, problems):
    for kind, component in (("StatefulSet", "coordinator"), ("Deployment", "worker")):
        for workload in find(docs, kind, component):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget" and
                       selects(d["spec"]["selector"].get("matchLabels", {}), labels)]
            if len(budgets) != 1:
                problems.append("%s: expected one PodDisruptionBudget selecting its pods, found %d" %
                                (kind_name(workload), len(budgets)))


def check_labels_and_image(docs, project_version, problems):
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if labels.get(LABEL_NAME) != "tributary" or (LABEL_COMPONENT not in labels and doc["kind"] != "ConfigMap"):
            problems.append("%s: needs labels %s=tributary and %s" % (kind_name(doc), LABEL_NAME, LABEL_COMPONENT))
        pod_spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod_spec.get("containers", []):
            if c["image"] != "tributary:" + project_version:
                problems.append("%s: image %s, expected tributary:%s (the project version)" %
                                (kind_name(doc), c["image"], project_version))


def gpu_requests(docs):
    """nvidia.com/gpu (requests, limits) of the worker container, or None when absent."""
    for doc in find(docs, "Deployment", "worker") + find(docs, "DaemonSet", "worker"):
        resources = doc["spec"]["template"]["spec"]["containers"][0].get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        if "nvidia.com/gpu" in requests or "nvidia.com/gpu" in limits:
            return requests.get("nvidia.com/gpu"), limits.get("nvidia.com/gpu")
    return None


def check_rendering(name, docs, args):
    problems = schema_problems(docs, args.kubernetes_version)
    check_coordinator(docs, args.tributary, args.work, args.repo, problems)
    check_worker(docs, args.tributary, args.work, args.repo, problems)
    check_budgets(docs, problems)
    check_labels_and_image(docs, args.project_version, problems)
    gpus = gpu_requests(docs)
    if name == "gpu" and (gpus is None or gpus[0] != gpus[1] or int(gpus[0]) < 1):
        problems.append("the gpu overlay must request and limit nvidia.com/gpu >= 1 per worker, got %s" % (gpus,))
    if name != "gpu" and gpus is not None:
        problems.append("only the gpu overlay asks for nvidia.com/gpu, got %s" % (gpus,))
    return problems


# --- controls: each check must catch what it is for ----------------------------------------------------------


def edit_config_map(docs, key, old, new):
    for doc in docs:
        if doc["kind"] == "ConfigMap" and key in doc.get("data", {}):
            if old not in doc["data"][key]:
                raise AssertionError("control: %r not in %s" % (old, key))
            doc["data"][key] = doc["data"][key].replace(old, new)


def replace_in_list(items, old, new):
    items[items.index(old)] = new


def edit_coordinator(docs, edit):
    edit(find(docs, "StatefulSet", "coordinator")[0])


def controls(base_docs, gpu_docs, args):
    """(description, broken copy of a rendering, rendering name, text one reported problem must contain)."""
    cases = []

    def case(description, docs, name, expected, edit):
        broken = copy.deepcopy(docs)
        edit(broken)
        cases.append((description, broken, name, expected))

    worker_spec = lambda d: find(d, "Deployment", "worker")[0]["spec"]["template"]["spec"]  # noqa: E731
    probe_path = lambda s: s["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]  # noqa: E731
    case("unknown field", base_docs, "base", "paht",
         lambda d: edit_coordinator(d, lambda s: probe_path(s).update(paht="/healthz")))
    case("wrong type", base_docs, "base", "replicas",
         lambda d: edit_coordinator(d, lambda s: s["spec"].update(replicas="one")))
    case("config key the daemon rejects", base_docs, "base", "rejects its config",
         lambda d: edit_config_map(d, "coordinator.yaml", "heartbeat_misses:", "hartbeat_misses:"))
    case("HTTP port not the probes' port", base_docs, "base", "livenessProbe must be GET /healthz",
         lambda d: edit_config_map(d, "coordinator.yaml", "0.0.0.0:7401", "0.0.0.0:7402"))
    case("data_dir not on the PVC", base_docs, "base", "must be the mount of a volumeClaimTemplate",
         lambda d: edit_config_map(d, "coordinator.yaml", "data_dir: /var/lib/tributary", "data_dir: /tmp/store"))
    case("no PodDisruptionBudget", base_docs, "base", "expected one PodDisruptionBudget",
         lambda d: d.remove(next(x for x in d if x["kind"] == "PodDisruptionBudget")))
    case("key outside the Secret mount", base_docs, "base", "is not in a Secret mount",
         lambda d: edit_config_map(d, "coordinator.yaml", "/etc/tributary/keys/", "/etc/tributary/"))
    case("key file unreadable for the user", base_docs, "base", "is not readable by the daemon's user",
         lambda d: [v["secret"].update(defaultMode=0o400) for v in worker_spec(d)["volumes"] if "secret" in v])
    case("worker endpoint to no Service", base_docs, "base", "does not reach the coordinator",
         lambda d: edit_config_map(d, "worker.yaml", "tributary-coordinator:7400", "tributary-coordinator:7401"))
    def drop_island_address(docs):
        container_args = worker_spec(docs)["containers"][0]["args"]
        at = container_args.index("worker.island_address=$(POD_IP)")
        del container_args[at - 1:at + 1]  # the --set before it too

    case("island address not the pod IP", base_docs, "base", "worker.island_address must be the pod IP",
         drop_island_address)
    case("volume with two sources", base_docs, "base", "has 2 sources",
         lambda d: worker_spec(d)["volumes"][-1].update(hostPath={"path": "/srv"}))
    case("threads not from the CPU request", base_docs, "base", "every core of the node",
         lambda d: replace_in_list(worker_spec(d)["containers"][0]["args"], "worker.threads=$(CPU_REQUEST)",
                                   "worker.threads=0"))
    case("gpu overlay without GPUs", gpu_docs, "gpu", "nvidia.com/gpu",
         lambda d: [c["resources"]["requests"].pop("nvidia.com/gpu") for w in find(d, "Deployment", "worker")
                    for c in w["spec"]["template"]["spec"]["containers"]])
    failures = 0
    for description, broken, name, expected in cases:
        problems = check_rendering(name, broken, args)
        if not any(expected in p for p in problems):
            print("FAIL: control '%s': no problem mentions %r; got %s" % (description, expected, problems))
            failures += 1
        else:
            print("ok: control '%s' is caught: %s" % (description, next(p for p in problems if expected in p)))
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tributary", required=True)
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--project-version", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("renderings", nargs="+", help="NAME.yaml: `kubectl kustomize` output of one kustomization")
    args = parser.parse_args()
    renderings = {os.path.basename(p)[:-len(".yaml")]: load_rendering(p) for p in args.renderings}
    failures = 0
    for name, docs in sorted(renderings.items()):
        problems = check_rendering(name, docs, args)
        for problem in problems:
            print("FAIL: %s: %s" % (name, problem))
        failures += len(problems)
        kinds = sorted(kind_name(d) for d in docs)
        verdict = "valid" if not problems else "%d problem(s) above" % len(problems)
        print("%s: %s: %d documents, Kubernetes %s schemas (strict): %s: %s" %
              ("ok" if not problems else "FAIL", name, len(docs), args.kubernetes_version, verdict, ", ".join(kinds)))
    if "base" not in renderings or "gpu" not in renderings:
        print("FAIL: expected renderings named base and gpu, got %s" % sorted(renderings))
        return 1
    failures += controls(renderings["base"], renderings["gpu"], args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

# TRIBUTARY_CUDA=AUTO enables the CUDA backend when nvcc is found (PATH or /usr/local/cuda).
# Kernels compile for sm_80 and sm_90 and link cuBLAS. Without nvcc the build is CPU-only.
set(TRIBUTARY_HAVE_CUDA OFF)
if(NOT TRIBUTARY_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(TRIBUTARY_NVCC nvcc HINTS /usr/local/cuda/bin)
    if(TRIBUTARY_NVCC)
      set(CMAKE_CUDA_COMPILER "${TRIBUTARY_NVCC}")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(TRIBUTARY_HAVE_CUDA ON)
    message(STATUS "tributary: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, sm_80 + sm_90)")
  elseif(TRIBUTARY_CUDA STREQUAL "ON")
    message(FATAL_ERROR "TRIBUTARY_CUDA=ON but no nvcc was found (looked on PATH and in /usr/local/cuda/bin)")
  else()
    message(STATUS "tributary: CUDA backend OFF (nvcc not found)")
  endif()
else()
  message(STATUS "tributary: CUDA backend OFF (TRIBUTARY_CUDA=OFF)")
endif()

if(TRIBUTARY_HAVE_CUDA)
  set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no CUDA20 flags for nvcc; .cu files include C++17 headers only
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  # Determinism (docs/ferret.md, "Determinism"): no implicit FMA contraction on the device either.
  set(CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS} --fmad=false -diag-suppress 2810")  # 2810: nvcc misreads [[nodiscard]] on classes
endif()

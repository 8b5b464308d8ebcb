# Finds nvcc before enable_language(CUDA), so the toolkit may live anywhere (a cluster's
# module, a conda environment, /opt/nvidia/...). First hit wins:
#   -DCMAKE_CUDA_COMPILER=... / $CUDACXX        (CMake's own, left alone)
#   -DCUDAToolkit_ROOT=... / $CUDAToolkit_ROOT   (CMake's CUDAToolkit variable)
#   $CUDA_HOME, $CUDA_PATH, $CUDA_ROOT           (set by most `module load cuda`)
#   nvcc on PATH
#   /usr/local/cuda                              (the default install; last)
# The C++ compiler is handed to nvcc as its host compiler (CMAKE_CUDA_HOST_COMPILER), so
# .cu host code is compiled by the same GCC as the rest (module environments often put an
# older or newer g++ first on PATH than the one CMake picked).
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  set(_roots)
  foreach(r "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}" "$ENV{CUDA_HOME}" "$ENV{CUDA_PATH}" "$ENV{CUDA_ROOT}")
    if(r)
      list(APPEND _roots "${r}")
    endif()
  endforeach()
  unset(_nvcc)
  if(_roots)
    find_program(_nvcc NAMES nvcc PATHS ${_roots} PATH_SUFFIXES bin NO_DEFAULT_PATH NO_CACHE)
  endif()
  if(NOT _nvcc)
    find_program(_nvcc NAMES nvcc NO_CACHE)  # PATH
  endif()
  if(NOT _nvcc)
    find_program(_nvcc NAMES nvcc PATHS /usr/local/cuda PATH_SUFFIXES bin NO_DEFAULT_PATH NO_CACHE)
  endif()
  if(NOT _nvcc)
    message(FATAL_ERROR "CRACKSEG_CUDA=ON but no nvcc was found: pass -DCUDAToolkit_ROOT=<toolkit> "
                        "(or set CUDA_HOME, or put nvcc on PATH, e.g. `module load cuda`)")
  endif()
  set(CMAKE_CUDA_COMPILER "${_nvcc}" CACHE FILEPATH "CUDA compiler (found from CUDAToolkit_ROOT/CUDA_HOME/PATH)")
  if(NOT CUDAToolkit_ROOT)
    get_filename_component(_bin "${_nvcc}" DIRECTORY)
    get_filename_component(_root "${_bin}" DIRECTORY)
    set(CUDAToolkit_ROOT "${_root}" CACHE PATH "CUDA toolkit root (from nvcc's location)")
  endif()
  unset(_nvcc)
  unset(_roots)
endif()
if(NOT CMAKE_CUDA_HOST_COMPILER AND NOT DEFINED ENV{CUDAHOSTCXX})
  set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}" CACHE FILEPATH "nvcc's host compiler (the C++ compiler)")
endif()
# One CUDA runtime in the process: the shared libcudart, as cuDNN, cuBLAS and NCCL use.
# CMake's default for CUDA targets is the static cudart, which next to CUDA::cudart put two
# runtimes (two sets of device state) into one binary.
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)

# cuDNN and NCCL: often installed apart from the toolkit (tarballs, modules, conda, spack, pip
# wheels). Search order, for each:
#   1. a CMake config package (find_package(CUDNN|NCCL CONFIG): spack, conda and vendor
#      builds may ship one) naming an imported library target; when CUDNN_ROOT / NCCL_ROOT
#      (or $CUDNN_ROOT / $CUDNN_HOME / $CUDNN_DIR, NCCL likewise) is given, only a package
#      under that root, so an explicit root always wins over a package found elsewhere;
#   2. the library and header under that root;
#   3. the toolkit's own directories, then the system paths.
# A value already in the cache (CRACKSEG_CUDNN, CRACKSEG_CUDNN_INCLUDE, ...) is kept.
# The headers' versions are checked against the libraries found (a header from one install
# and a library from another is the classic cluster failure: it links, then crashes).
foreach(_dep CUDNN NCCL)
  set(_hints_${_dep})
  foreach(r "${${_dep}_ROOT}" "$ENV{${_dep}_ROOT}" "$ENV{${_dep}_HOME}" "$ENV{${_dep}_DIR}")
    if(r)
      list(APPEND _hints_${_dep} "${r}")
    endif()
  endforeach()
endforeach()
set(_tk_lib_hints ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_TARGET_DIR}/lib64 ${CUDAToolkit_TARGET_DIR}/lib)

# 1. Config packages. A package counts when it defines one of the usual imported targets with
# a library file; its include directories are searched for the header. Otherwise the search
# below runs as if there were no package.
set(_pkg_names_CUDNN CUDNN cuDNN)
set(_pkg_targets_CUDNN CUDNN::cudnn cudnn::cudnn CUDNN::CUDNN cuDNN::cudnn)
set(_pkg_header_CUDNN cudnn_version.h)
set(_pkg_names_NCCL NCCL nccl)
set(_pkg_targets_NCCL NCCL::nccl nccl::nccl NCCL::NCCL)
set(_pkg_header_NCCL nccl.h)
foreach(_dep CUDNN NCCL)
  set(CRACKSEG_${_dep}_SOURCE "search")
  if(CRACKSEG_${_dep} AND CRACKSEG_${_dep}_INCLUDE)
    set(CRACKSEG_${_dep}_SOURCE "cache")
    continue()
  endif()
  if(_hints_${_dep})
    find_package(${_dep} CONFIG QUIET NAMES ${_pkg_names_${_dep}} NO_DEFAULT_PATH PATHS ${_hints_${_dep}})
  else()
    find_package(${_dep} CONFIG QUIET NAMES ${_pkg_names_${_dep}})
  endif()
  if(NOT ${_dep}_FOUND)
    continue()
  endif()
  set(_lib "")
  set(_inc "")
  foreach(_t ${_pkg_targets_${_dep}})
    if(NOT TARGET ${_t})
      continue()
    endif()
    get_target_property(_aliased ${_t} ALIASED_TARGET)
    if(_aliased)
      set(_t ${_aliased})
    endif()
    get_target_property(_type ${_t} TYPE)
    if(_type STREQUAL "INTERFACE_LIBRARY")
      continue()
    endif()
    get_target_property(_lib ${_t} IMPORTED_LOCATION)
    if(NOT _lib)
      get_target_property(_cfgs ${_t} IMPORTED_CONFIGURATIONS)
      foreach(_c ${_cfgs})
        get_target_property(_lib ${_t} IMPORTED_LOCATION_${_c})
        if(_lib)
          break()
        endif()
      endforeach()
    endif()
    get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(_lib)
      break()
    endif()
  endforeach()
  if(NOT _lib OR NOT EXISTS "${_lib}")
    message(STATUS "${_dep}: the config package ${${_dep}_DIR} has no imported library target with a file "
                   "(${_pkg_targets_${_dep}}); searching for the library instead")
    continue()
  endif()
  find_path(CRACKSEG_${_dep}_INCLUDE ${_pkg_header_${_dep}} PATHS ${_inc} NO_DEFAULT_PATH)
  set(CRACKSEG_${_dep} "${_lib}" CACHE FILEPATH "${_dep} library (from the config package ${${_dep}_DIR})" FORCE)
  set(CRACKSEG_${_dep}_SOURCE "config package ${${_dep}_DIR}")
endforeach()

# 2-3. Library and header search (skipped for what step 1 or the cache already set).
find_library(CRACKSEG_CUDNN cudnn HINTS ${_hints_CUDNN} PATH_SUFFIXES lib64 lib lib/x64 NO_DEFAULT_PATH)
find_library(CRACKSEG_CUDNN cudnn HINTS ${_tk_lib_hints} REQUIRED)
find_library(CRACKSEG_NCCL nccl HINTS ${_hints_NCCL} PATH_SUFFIXES lib64 lib NO_DEFAULT_PATH)
find_library(CRACKSEG_NCCL nccl HINTS ${_tk_lib_hints} REQUIRED)
find_path(CRACKSEG_CUDNN_INCLUDE cudnn_version.h HINTS ${_hints_CUDNN} PATH_SUFFIXES include NO_DEFAULT_PATH)
find_path(CRACKSEG_CUDNN_INCLUDE cudnn_version.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
find_path(CRACKSEG_NCCL_INCLUDE nccl.h HINTS ${_hints_NCCL} PATH_SUFFIXES include NO_DEFAULT_PATH)
find_path(CRACKSEG_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)

# Header versions.
file(STRINGS "${CRACKSEG_CUDNN_INCLUDE}/cudnn_version.h" _v REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ")
string(REGEX REPLACE ".*CUDNN_MAJOR ([0-9]+).*" "\\1" CRACKSEG_CUDNN_HEADER_MAJOR "${_v}")
string(REGEX REPLACE ".*CUDNN_MINOR ([0-9]+).*" "\\1" _minor "${_v}")
set(CRACKSEG_CUDNN_HEADER_VERSION "${CRACKSEG_CUDNN_HEADER_MAJOR}.${_minor}")
file(STRINGS "${CRACKSEG_NCCL_INCLUDE}/nccl.h" _v REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
string(REGEX REPLACE ".*NCCL_MAJOR ([0-9]+).*" "\\1" CRACKSEG_NCCL_HEADER_MAJOR "${_v}")
string(REGEX REPLACE ".*NCCL_MINOR ([0-9]+).*" "\\1" _minor "${_v}")
set(CRACKSEG_NCCL_HEADER_VERSION "${CRACKSEG_NCCL_HEADER_MAJOR}.${_minor}")
if(CRACKSEG_CUDNN_HEADER_MAJOR LESS 9)
  message(FATAL_ERROR "cuDNN ${CRACKSEG_CUDNN_HEADER_VERSION} at ${CRACKSEG_CUDNN_INCLUDE}: crackseg needs cuDNN 9 "
                      "(set CUDNN_ROOT to a cuDNN 9 install)")
endif()

# Library versions: the soname's major (libcudnn.so.9, libnccl.so.2) must match the header's.
foreach(_dep CUDNN NCCL)
  get_filename_component(_real "${CRACKSEG_${_dep}}" REALPATH)
  get_filename_component(_name "${_real}" NAME)
  if(_name MATCHES "\\.so\\.([0-9]+)")
    if(NOT CMAKE_MATCH_1 STREQUAL CRACKSEG_${_dep}_HEADER_MAJOR)
      message(FATAL_ERROR "${_dep}: the header ${CRACKSEG_${_dep}_INCLUDE} is version "
                          "${CRACKSEG_${_dep}_HEADER_VERSION} but the library ${_real} is major ${CMAKE_MATCH_1}: "
                          "point ${_dep}_ROOT at one install holding both")
    endif()
  endif()
endforeach()
# Finer (major.minor) check by asking the libraries themselves; this needs no GPU. Skipped
# when cross-compiling or when the program cannot run here (a warning says so).
if(NOT CMAKE_CROSSCOMPILING AND NOT DEFINED CRACKSEG_CUDA_LIB_VERSIONS)
  set(_src "${CMAKE_BINARY_DIR}/CMakeFiles/crackseg_cuda_versions.cpp")
  file(WRITE "${_src}" "#include <cstdio>\n#include <cudnn.h>\n#include <nccl.h>\nint main() {\n"
                       "  int n = 0; ncclGetVersion(&n); const size_t c = cudnnGetVersion();\n"
                       "  std::printf(\"%d.%d;%d.%d\", int(c / 10000), int(c % 10000 / 100), n / 10000, n % 10000 / 100);\n"
                       "  return 0;\n}\n")
  try_run(_run _compile "${CMAKE_BINARY_DIR}/CMakeFiles/crackseg_cuda_versions" "${_src}"
          CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${CRACKSEG_CUDNN_INCLUDE};${CRACKSEG_NCCL_INCLUDE};${CUDAToolkit_INCLUDE_DIRS}"
          LINK_LIBRARIES ${CRACKSEG_CUDNN} ${CRACKSEG_NCCL} CUDA::cudart
          RUN_OUTPUT_VARIABLE _out)
  if(_compile AND _run EQUAL 0 AND _out MATCHES "^([0-9]+\\.[0-9]+);([0-9]+\\.[0-9]+)$")
    set(CRACKSEG_CUDA_LIB_VERSIONS "${_out}" CACHE INTERNAL "cuDNN;NCCL library versions")
  else()
    message(WARNING "could not run a program against cuDNN/NCCL to read their library versions; "
                    "only the sonames were checked against the headers")
    set(CRACKSEG_CUDA_LIB_VERSIONS "" CACHE INTERNAL "")
  endif()
endif()
if(CRACKSEG_CUDA_LIB_VERSIONS)
  list(GET CRACKSEG_CUDA_LIB_VERSIONS 0 _cudnn_lib)
  list(GET CRACKSEG_CUDA_LIB_VERSIONS 1 _nccl_lib)
  # cuDNN's minor versions are compatible upwards (a newer library runs older headers' code);
  # an older library than the header is not. NCCL: the same rule.
  if(_cudnn_lib VERSION_LESS CRACKSEG_CUDNN_HEADER_VERSION)
    message(FATAL_ERROR "cuDNN library ${CRACKSEG_CUDNN} is ${_cudnn_lib}, older than its header "
                        "${CRACKSEG_CUDNN_INCLUDE}/cudnn_version.h (${CRACKSEG_CUDNN_HEADER_VERSION})")
  endif()
  if(_nccl_lib VERSION_LESS CRACKSEG_NCCL_HEADER_VERSION)
    message(FATAL_ERROR "NCCL library ${CRACKSEG_NCCL} is ${_nccl_lib}, older than its header "
                        "${CRACKSEG_NCCL_INCLUDE}/nccl.h (${CRACKSEG_NCCL_HEADER_VERSION})")
  endif()
endif()
message(STATUS "CUDA ${CUDAToolkit_VERSION} at ${CUDAToolkit_BIN_DIR}; cuDNN ${CRACKSEG_CUDNN_HEADER_VERSION} "
               "(${CRACKSEG_CUDNN}, ${CRACKSEG_CUDNN_SOURCE}); NCCL ${CRACKSEG_NCCL_HEADER_VERSION} "
               "(${CRACKSEG_NCCL}, ${CRACKSEG_NCCL_SOURCE})")

# .cu files include the C++20 core headers (source_location, rng.hpp); rng.hpp's constexpr
# Philox is called from device code as is (--expt-relaxed-constexpr), so the CPU and GPU
# dropout masks come from one definition. CUDA sources inherit CXX_STANDARD 20, and CMake
# 3.25 does not yet know nvcc's C++20 flag (nvcc >= 12 has it): teach it.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()

add_library(crackseg_cuda_deps INTERFACE)
target_include_directories(crackseg_cuda_deps SYSTEM INTERFACE ${CRACKSEG_CUDNN_INCLUDE} ${CRACKSEG_NCCL_INCLUDE})
target_link_libraries(crackseg_cuda_deps INTERFACE CUDA::cudart CUDA::cublas ${CRACKSEG_CUDNN} ${CRACKSEG_NCCL})
# Only .cu sources see these (crackseg_warnings covers C++ only); host warnings go through
# -Xcompiler so nvcc's generated host code is held to the same -Wall -Wextra.
target_compile_options(crackseg_cuda_deps INTERFACE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${CRACKSEG_WERROR}>>:-Werror=all-warnings>)

# cuDNN and NCCL ship no CMake config in the CUDA toolkit tree: locate them next to it.
find_library(CRACKSEG_CUDNN cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 REQUIRED)
find_library(CRACKSEG_NCCL nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 REQUIRED)
find_path(CRACKSEG_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include REQUIRED)
find_path(CRACKSEG_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include REQUIRED)

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

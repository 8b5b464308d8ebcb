# cuDNN and NCCL ship no CMake config in the CUDA toolkit tree: locate them next to it.
find_library(CRACKSEG_CUDNN cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 REQUIRED)
find_library(CRACKSEG_NCCL nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 REQUIRED)
find_path(CRACKSEG_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include REQUIRED)
find_path(CRACKSEG_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include REQUIRED)
add_library(crackseg_cuda_deps INTERFACE)
target_include_directories(crackseg_cuda_deps INTERFACE ${CRACKSEG_CUDNN_INCLUDE} ${CRACKSEG_NCCL_INCLUDE})
target_link_libraries(crackseg_cuda_deps INTERFACE CUDA::cudart CUDA::cublas ${CRACKSEG_CUDNN} ${CRACKSEG_NCCL})

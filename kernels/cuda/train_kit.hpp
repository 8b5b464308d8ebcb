// The trainer's device pieces for train.device = "cuda" (src/train/train_device.hpp):
// DeviceLoss (targets uploaded into a reused device buffer), DeviceOptimizer, and an
// NcclCommunicator built over the run's MPI communicator driving DeviceGradientSync.
// The kit also applies train.determinism to the process's CUDA context (bitwise:
// deterministic algorithms, TF32 off; fast: heuristics' choice, TF32 still off — there is
// no config switch for it yet).
//
// Registration (crackseg_train cannot depend on this library, so the executable does it,
// next to register_cuda_backend()):
//   crackseg::cuda::register_cuda_training();   // TrainDevice(cuda backend, cfg) works from here on
#pragma once

namespace crackseg::cuda {

void register_cuda_training();

}  // namespace crackseg::cuda

// The NCCL process group, compiled only when build.rs finds NCCL's and CUDA's headers (the
// CUDA torch wheel ships nccl.h; the CUDA runtime headers it needs beyond the wheel come from
// the nvidia-cuda-crt and nvidia-cuda-cccl wheels). Without it, posekit_dist.cpp supplies a
// pk_nccl_new that says NCCL is not compiled in.
//
// Follows torch.distributed's `_new_process_group_helper` for the "nccl" backend: a
// ProcessGroupNCCL over a PrefixStore, bound to this rank's device.

#include <chrono>
#include <string>

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "internal.hpp"

using posekit_dist::guarded;
using posekit_dist::store_ref;

extern "C" {

int pk_nccl_compiled(void) {
  return 1;
}

char* pk_nccl_new(PkStore* store, const char* prefix, int32_t rank, int32_t size,
                  int64_t timeout_ms, int32_t device, PkGroup** out) {
  return guarded([&] {
    TORCH_CHECK(prefix != nullptr && out != nullptr, "null argument");
    // DeviceIndex is a char-sized integer: widen it so that messages print a number.
    int count = static_cast<int>(c10::cuda::device_count());
    TORCH_CHECK(device >= 0 && device < count, "CUDA device ", device,
                " does not exist (this machine has ", count, ")");
    // One process per GPU: make this rank's device the current one before NCCL creates its
    // communicator, as torchrun scripts do with torch.cuda.set_device(LOCAL_RANK).
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store_ref(store));
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, options);
    // As init_process_group(device_id=...) does: bind the group to the device and create the
    // NCCL communicator now, so that a NCCL problem shows here rather than at the first step.
    c10::Device cuda(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
    backend->setBoundDeviceId(cuda);
    backend->eagerConnectSingleDevice(cuda);
    *out = new PkGroup{backend, static_cast<int64_t>(device)};
  });
}

} // extern "C"

// posekit-dist's shim over libtorch's c10d: the rendezvous store, the Gloo process group and
// the collectives, behind the C interface of posekit_dist.h.
//
// It follows what torch.distributed does in Python (torch/distributed/rendezvous.py
// `_create_c10d_store`, distributed_c10d.py `_new_process_group_helper` and the pybind
// constructor of ProcessGroupGloo in torch/csrc/distributed/c10d/init.cpp), minus Python.
//
// Gloo's headers are not in the torch wheel (libtorch_cpu.so has Gloo compiled in, but only
// ships c10d's own headers); build.rs finds them elsewhere (Debian's libgloo-dev). c10d's
// ProcessGroupGloo only holds pointers to Gloo's types, so its layout does not depend on which
// Gloo version the headers come from; this shim never touches a Gloo object itself.

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include <c10/util/Logging.h>

#include <torch/csrc/autograd/custom_function.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "internal.hpp"

using posekit_dist::copy_message;
using posekit_dist::guarded;
using posekit_dist::store_ref;
using posekit_dist::tensor_ref;

namespace {

[[maybe_unused]] std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> items;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) {
      items.push_back(item);
    }
  }
  return items;
}

PkGroup* group_ref(PkGroup* group) {
  TORCH_CHECK(group != nullptr && group->backend, "null process group");
  return group;
}

// c10d's collectives read and write the tensors' memory directly, so they want dense,
// contiguous tensors; posekit-dist's Rust side only ever passes its own flat buffers.
void check_dense(const at::Tensor& tensor, const char* what) {
  TORCH_CHECK(tensor.defined(), what, ": undefined tensor");
  TORCH_CHECK(tensor.layout() == at::kStrided, what, ": only dense tensors are supported");
  TORCH_CHECK(tensor.is_contiguous(), what, ": the tensor must be contiguous");
}

c10d::ReduceOp reduce_op(int32_t op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    default:
      TORCH_CHECK(false, "unknown reduce operation ", op);
  }
}

// While a store connects, c10d logs every failed attempt with a C++ backtrace; posekit reports
// the final failure itself, in one line. So unless the user chose a level (TORCH_CPP_LOG_LEVEL),
// only fatal messages are logged during the connection.
class QuietConnectLogs {
 public:
  QuietConnectLogs() : saved_(FLAGS_caffe2_log_level) {
    if (std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr) {
      FLAGS_caffe2_log_level = c10::GLOG_FATAL;
    }
  }
  ~QuietConnectLogs() {
    FLAGS_caffe2_log_level = saved_;
  }
  QuietConnectLogs(const QuietConnectLogs&) = delete;
  QuietConnectLogs& operator=(const QuietConnectLogs&) = delete;

 private:
  int saved_;
};

PkWork* wrap(c10::intrusive_ptr<c10d::Work> work) {
  return new PkWork{std::move(work)};
}

// Sums `tensor` (dense, contiguous) across the group in place and waits for the result.
void allreduce_sum_now(c10d::Backend& backend, at::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  backend.allreduce(tensors, options)->wait();
}

// y = sum over ranks of x, with dL/dx = sum over ranks of dL/dy: the rule of
// torch.distributed.nn.functional's `_AllReduce` (torch/distributed/nn/functional.py) for
// ReduceOp.SUM. Each rank's loss L_r reaches every rank's x through y, so the gradient that
// flows back into rank r's x is the sum of all ranks' dL_r'/dy: what SyncBatchNorm's backward
// all-reduces as `sum_dy` / `sum_dy_xmu` (torch/nn/modules/_functions.py).
//
// The backend rides in the autograd context (as a capsule holding a reference), so the graph
// keeps the group's connections alive until its backward has run.
class AllReduceSum : public torch::autograd::Function<AllReduceSum> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const c10::intrusive_ptr<c10d::Backend>& backend) {
    ctx->saved_data["backend"] = c10::IValue::make_capsule(backend);
    at::Tensor sum = input.clone(at::MemoryFormat::Contiguous);
    allreduce_sum_now(*backend, sum);
    return sum;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto backend = c10::static_intrusive_pointer_cast<c10d::Backend>(
        ctx->saved_data["backend"].toCapsule());
    at::Tensor sum = grads[0].clone(at::MemoryFormat::Contiguous);
    allreduce_sum_now(*backend, sum);
    return {sum, at::Tensor()};
  }
};

} // namespace

extern "C" {

void pk_free_error(char* error) {
  std::free(error);
}

void pk_free_bytes(uint8_t* bytes) {
  std::free(bytes);
}

// --- Store ---

char* pk_store_new(const char* host, uint16_t port, int is_server, int32_t world_size,
                   int64_t timeout_ms, PkStore** out) {
  return guarded([&] {
    TORCH_CHECK(host != nullptr && out != nullptr, "null argument");
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server != 0;
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.waitWorkers = true;
    options.timeout = std::chrono::milliseconds(timeout_ms);
    // Several groups (a restart, another job's ranks) may share one store, as in torch.
    options.multiTenant = true;
    QuietConnectLogs quiet;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    uint16_t bound = store->getPort();
    *out = new PkStore{store, bound};
  });
}

char* pk_store_clone(PkStore* store, PkStore** out) {
  return guarded([&] {
    TORCH_CHECK(out != nullptr, "null argument");
    auto copy = store_ref(store)->clone();
    *out = new PkStore{copy, store->port};
  });
}

uint16_t pk_store_port(PkStore* store) {
  return store == nullptr ? 0 : store->port;
}

char* pk_store_set_timeout(PkStore* store, int64_t timeout_ms) {
  return guarded([&] { store_ref(store)->setTimeout(std::chrono::milliseconds(timeout_ms)); });
}

char* pk_store_set(PkStore* store, const char* key, const uint8_t* data, size_t len) {
  return guarded([&] {
    TORCH_CHECK(key != nullptr && (data != nullptr || len == 0), "null argument");
    std::vector<uint8_t> value(data, data + len);
    store_ref(store)->set(std::string(key), value);
  });
}

char* pk_store_add(PkStore* store, const char* key, int64_t delta, int64_t* value) {
  return guarded([&] {
    TORCH_CHECK(key != nullptr && value != nullptr, "null argument");
    *value = store_ref(store)->add(std::string(key), delta);
  });
}

char* pk_store_try_get(PkStore* store, const char* key, uint8_t** data, size_t* len,
                       int* found) {
  return guarded([&] {
    TORCH_CHECK(key != nullptr && data != nullptr && len != nullptr && found != nullptr,
                "null argument");
    *data = nullptr;
    *len = 0;
    *found = 0;
    auto handle = store_ref(store);
    std::string name(key);
    if (!handle->check({name})) {
      return;
    }
    std::vector<uint8_t> value = handle->get(name);
    uint8_t* bytes = static_cast<uint8_t*>(std::malloc(value.empty() ? 1 : value.size()));
    TORCH_CHECK(bytes != nullptr, "out of memory");
    std::copy(value.begin(), value.end(), bytes);
    *data = bytes;
    *len = value.size();
    *found = 1;
  });
}

void pk_store_free(PkStore* store) {
  delete store;
}

// --- Process groups ---

#ifdef USE_C10D_GLOO
int pk_gloo_compiled(void) {
  return 1;
}

char* pk_gloo_new(PkStore* store, const char* prefix, int32_t rank, int32_t size,
                  int64_t timeout_ms, const char* interfaces, const char* hostname,
                  PkGroup** out) {
  return guarded([&] {
    TORCH_CHECK(prefix != nullptr && out != nullptr, "null argument");
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (interfaces != nullptr) {
      for (const auto& name : split_commas(interfaces)) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      }
      TORCH_CHECK(!options->devices.empty(), "no network interface named in '", interfaces,
                  "'");
    } else if (hostname != nullptr) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // Two worker threads per device, as torch.distributed's Python binding sets up.
    options->threads = static_cast<int>(options->devices.size()) * 2;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store_ref(store));
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, options);
    *out = new PkGroup{backend, std::nullopt};
  });
}
#else
int pk_gloo_compiled(void) {
  return 0;
}

char* pk_gloo_new(PkStore*, const char*, int32_t, int32_t, int64_t, const char*, const char*,
                  PkGroup**) {
  return copy_message(
      "this build of posekit has no Gloo process group (posekit-dist was compiled without "
      "Gloo's headers: install libgloo-dev, or set GLOO_INCLUDE_DIR, and rebuild)");
}
#endif

#ifndef POSEKIT_DIST_WITH_NCCL
int pk_nccl_compiled(void) {
  return 0;
}

char* pk_nccl_new(PkStore*, const char*, int32_t, int32_t, int64_t, int32_t, PkGroup**) {
  return copy_message(
      "this build of posekit has no NCCL process group (posekit-dist was compiled without "
      "NCCL's and CUDA's headers; see crates/posekit-dist/README.md)");
}
#endif

void pk_group_free(PkGroup* group) {
  // The backend's destructor joins its worker threads; it must not throw into Rust.
  try {
    delete group;
  } catch (...) {
  }
}

char* pk_group_broadcast_start(PkGroup* group, void* tensor, int32_t root, PkWork** out) {
  return guarded([&] {
    TORCH_CHECK(out != nullptr, "null argument");
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> tensors{tensor_ref(tensor)};
    check_dense(tensors[0], "broadcast");
    c10d::BroadcastOptions options;
    options.rootRank = root;
    *out = wrap(group_ref(group)->backend->broadcast(tensors, options));
  });
}

char* pk_group_allreduce_start(PkGroup* group, void* tensor, int32_t op, PkWork** out) {
  return guarded([&] {
    TORCH_CHECK(out != nullptr, "null argument");
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> tensors{tensor_ref(tensor)};
    check_dense(tensors[0], "all_reduce");
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    *out = wrap(group_ref(group)->backend->allreduce(tensors, options));
  });
}

char* pk_group_allgather_start(PkGroup* group, void* input, void* const* outputs, size_t n,
                               PkWork** out) {
  return guarded([&] {
    TORCH_CHECK(out != nullptr && outputs != nullptr, "null argument");
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> inputs{tensor_ref(input)};
    check_dense(inputs[0], "all_gather input");
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (size_t i = 0; i < n; ++i) {
      gathered[0].push_back(tensor_ref(outputs[i]));
      check_dense(gathered[0].back(), "all_gather output");
    }
    *out = wrap(group_ref(group)->backend->allgather(gathered, inputs));
  });
}

char* pk_group_barrier_start(PkGroup* group, int64_t timeout_ms, PkWork** out) {
  return guarded([&] {
    TORCH_CHECK(out != nullptr, "null argument");
    auto handle = group_ref(group);
    c10d::BarrierOptions options;
    if (timeout_ms > 0) {
      options.timeout = std::chrono::milliseconds(timeout_ms);
    }
    if (handle->cuda_device.has_value()) {
      options.device_ids = {*handle->cuda_device};
    }
    *out = wrap(handle->backend->barrier(options));
  });
}

char* pk_work_wait(PkWork* work) {
  return guarded([&] {
    TORCH_CHECK(work != nullptr && work->work, "null work");
    work->work->wait();
  });
}

void pk_work_free(PkWork* work) {
  delete work;
}

// --- Tensors ---

char* pk_tensor_set_grad(void* tensor, void* grad) {
  return guarded([&] {
    at::Tensor& variable = tensor_ref(tensor);
    const at::Tensor& view = tensor_ref(grad);
    TORCH_CHECK(variable.requires_grad(), "the tensor does not require a gradient");
    TORCH_CHECK(view.sizes() == variable.sizes() && view.scalar_type() == variable.scalar_type() &&
                    view.device() == variable.device(),
                "the gradient does not match its tensor's shape, dtype or device");
    variable.mutable_grad() = view;
  });
}

char* pk_allreduce_sum_autograd(PkGroup* group, void* input, void* out) {
  return guarded([&] {
    TORCH_CHECK(out != nullptr, "null argument");
    const at::Tensor& x = tensor_ref(input);
    TORCH_CHECK(x.defined() && x.layout() == at::kStrided,
                "all_reduce (autograd): only dense tensors are supported");
    tensor_ref(out) = AllReduceSum::apply(x, group_ref(group)->backend);
  });
}

} // extern "C"

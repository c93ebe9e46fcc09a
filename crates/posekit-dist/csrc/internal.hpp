// Definitions shared by the shim's translation units (the Gloo one and the optional NCCL one).
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "posekit_dist.h"

struct PkStore {
  c10::intrusive_ptr<c10d::Store> store;
  uint16_t port;
};

struct PkGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
  // The CUDA device of an NCCL group (its barrier needs it); empty for Gloo.
  std::optional<int64_t> cuda_device;
};

struct PkWork {
  c10::intrusive_ptr<c10d::Work> work;
};

namespace posekit_dist {

inline char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.data(), message.size() + 1);
  }
  return out;
}

// c10's error text without the C++ backtrace that `what()` appends (from the line "Exception
// raised from ..." on), which would bury the one line a user needs. Matched on the text rather
// than caught as `c10::Error`: naming that type here makes every binary that links this shim
// need libc10 for its typeinfo, even one that never calls it (posekit's front binary, which
// must load no libtorch).
inline std::string without_backtrace(const char* what) {
  std::string text(what);
  const auto cut = text.find("\nException raised from ");
  if (cut != std::string::npos) {
    text.resize(cut);
  }
  return text;
}

// Runs `body` and turns whatever it throws into an error string.
template <typename F>
char* guarded(F&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return copy_message(without_backtrace(e.what()));
  } catch (...) {
    return copy_message("unknown C++ exception");
  }
}

// The tensor behind a tch `Tensor::as_ptr()`.
inline at::Tensor& tensor_ref(void* tensor) {
  TORCH_CHECK(tensor != nullptr, "null tensor");
  return *static_cast<at::Tensor*>(tensor);
}

inline c10::intrusive_ptr<c10d::Store> store_ref(PkStore* store) {
  TORCH_CHECK(store != nullptr, "null store");
  return store->store;
}

} // namespace posekit_dist

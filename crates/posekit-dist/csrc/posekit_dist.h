// C interface between posekit-dist's Rust code and libtorch's c10d (TCPStore, ProcessGroupGloo,
// ProcessGroupNCCL). Every function that can fail returns NULL on success or an error message
// allocated with malloc, which the caller frees with pk_free_error: no C++ exception ever
// crosses into Rust.
//
// Tensors are passed as `void*` pointing at a `torch::Tensor` (what tch's `Tensor::as_ptr()`
// returns: torch-sys declares `typedef torch::Tensor *tensor;`).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PkStore PkStore;
typedef struct PkGroup PkGroup;
typedef struct PkWork PkWork;

void pk_free_error(char* error);
void pk_free_bytes(uint8_t* bytes);

// --- Store (c10d::TCPStore) ---

// Connects to (or, with is_server, hosts and then connects to) the TCPStore at host:port.
// A server waits up to timeout_ms for world_size clients (itself included); a client retries
// the connection until timeout_ms. Port 0 with is_server lets the OS pick (see pk_store_port).
char* pk_store_new(const char* host, uint16_t port, int is_server, int32_t world_size,
                   int64_t timeout_ms, PkStore** out);
// A second connection to the same store (for a thread of its own).
char* pk_store_clone(PkStore* store, PkStore** out);
uint16_t pk_store_port(PkStore* store);
char* pk_store_set_timeout(PkStore* store, int64_t timeout_ms);
char* pk_store_set(PkStore* store, const char* key, const uint8_t* data, size_t len);
char* pk_store_add(PkStore* store, const char* key, int64_t delta, int64_t* value);
// Reads a key without waiting for it: *found = 0 when it does not exist.
char* pk_store_try_get(PkStore* store, const char* key, uint8_t** data, size_t* len, int* found);
void pk_store_free(PkStore* store);

// --- Process groups ---

// ProcessGroupGloo over `store` (keys under `prefix`), with `timeout_ms` for every collective.
// Its Gloo devices are, in order of preference: one per network interface in the
// comma-separated `interfaces` (non-NULL), one bound to the address of `hostname` (non-NULL),
// else libtorch's default device (this host's name, falling back to loopback).
// 1 when this build has ProcessGroupGloo compiled in (build.rs found Gloo's headers).
int pk_gloo_compiled(void);
char* pk_gloo_new(PkStore* store, const char* prefix, int32_t rank, int32_t size,
                  int64_t timeout_ms, const char* interfaces, const char* hostname,
                  PkGroup** out);
// 1 when this build has ProcessGroupNCCL compiled in.
int pk_nccl_compiled(void);
// ProcessGroupNCCL over `store` for CUDA device `device`.
char* pk_nccl_new(PkStore* store, const char* prefix, int32_t rank, int32_t size,
                  int64_t timeout_ms, int32_t device, PkGroup** out);
void pk_group_free(PkGroup* group);

// Collectives. Each *_start returns a work handle; pk_work_wait blocks until it completes
// (or fails), and pk_work_free releases it. Tensors must be dense and contiguous.
char* pk_group_broadcast_start(PkGroup* group, void* tensor, int32_t root, PkWork** out);
// op: 0 = sum, 1 = max, 2 = min.
char* pk_group_allreduce_start(PkGroup* group, void* tensor, int32_t op, PkWork** out);
// `outputs` holds one tensor per rank, each shaped like `input`.
char* pk_group_allgather_start(PkGroup* group, void* input, void* const* outputs, size_t n,
                               PkWork** out);
// timeout_ms 0: the group's collective timeout.
char* pk_group_barrier_start(PkGroup* group, int64_t timeout_ms, PkWork** out);
char* pk_work_wait(PkWork* work);
void pk_work_free(PkWork* work);

// --- Tensors ---

// Makes `grad` the gradient of `tensor` (same shape, dtype and device), so that backward
// accumulates into it: GradAverager points every gradient into its bucket buffers, as
// DistributedDataParallel does with gradient_as_bucket_view=True.
char* pk_tensor_set_grad(void* tensor, void* grad);

// Differentiable all-reduce (sum) over `group`: `*out` (a tch tensor handle, overwritten) becomes
// the sum of every rank's `input`, tracked by autograd; its backward sums the incoming
// gradients across the ranks in the same way (torch.distributed.nn.functional.all_reduce with
// ReduceOp.SUM). Blocking: it returns once the sum is complete. Every rank must call it (and
// run the backward through it) in the same order as its other collectives.
char* pk_allreduce_sum_autograd(PkGroup* group, void* input, void* out);

#ifdef __cplusplus
}
#endif

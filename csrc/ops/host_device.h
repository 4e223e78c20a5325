#pragma once

// Marks small helpers that both the C++ and the CUDA kernels call.
#if defined(__CUDACC__)
#define PSL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PSL_HOST_DEVICE inline
#endif

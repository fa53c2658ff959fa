// Namespace and function-qualifier macros shared by every hylra header.
#pragma once

#include "hylra/version.hpp"

#define HYLRA_NS_NAME_(major, minor, patch) v##major##_##minor##_##patch
#define HYLRA_NS_NAME(major, minor, patch) HYLRA_NS_NAME_(major, minor, patch)

// Everything lives in an inline namespace named after the version (as CUB does), so two copies of
// hylra compiled into one engine binary, for different versions or architectures, cannot collide
// at link time. An engine that builds for several architectures defines HYLRA_NS_TAG itself.
#ifndef HYLRA_NS_TAG
#define HYLRA_NS_TAG HYLRA_NS_NAME(HYLRA_VERSION_MAJOR, HYLRA_VERSION_MINOR, HYLRA_VERSION_PATCH)
#endif

#define HYLRA_NAMESPACE_BEGIN \
  namespace hylra {           \
  inline namespace HYLRA_NS_TAG {
#define HYLRA_NAMESPACE_END \
  }                         \
  }

#if defined(__CUDACC__)
#define HYLRA_HOST_DEVICE __host__ __device__ __forceinline__
#define HYLRA_DEVICE __device__ __forceinline__
#else
#define HYLRA_HOST_DEVICE inline
#define HYLRA_DEVICE inline
#endif

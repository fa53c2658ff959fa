// hylra::Status: what every host entry point returns. Library code never prints, throws or exits;
// it reports. A Status is a code plus a static string naming what was wrong ("k_max", "seq_lens"),
// so it is cheap to copy, usable in constant expressions and safe to return from any depth.
#pragma once

#include <string>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

enum class StatusCode : int {
  kSuccess = 0,
  kNullPointer,         // a required pointer is null
  kInvalidShape,        // a dimension is zero, negative or inconsistent with another
  kInvalidStride,       // strides overlap rows or disagree with the shape
  kMisaligned,          // a pointer or stride breaks the vector-width alignment a kernel needs
  kInvalidValue,        // a scalar argument is out of its documented range
  kNotSupported,        // valid, but outside the compiled set (head dim, page size, dtype, ...)
  kWorkspaceTooSmall,   // caller's workspace is smaller than workspace_size() asked for
  kInvalidPolicy,       // a layer policy breaks a rule of DESIGN.md section 2
  kInfeasible,          // a solver's constraints admit no solution
  kParseError,          // malformed file contents (JSON, .npy)
  kIoError,             // a file could not be opened, read or written
  kCudaError,           // the CUDA runtime reported an error (detail names it)
};

constexpr const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::kSuccess: return "success";
    case StatusCode::kNullPointer: return "null pointer";
    case StatusCode::kInvalidShape: return "invalid shape";
    case StatusCode::kInvalidStride: return "invalid stride";
    case StatusCode::kMisaligned: return "misaligned";
    case StatusCode::kInvalidValue: return "invalid value";
    case StatusCode::kNotSupported: return "not supported";
    case StatusCode::kWorkspaceTooSmall: return "workspace too small";
    case StatusCode::kInvalidPolicy: return "invalid policy";
    case StatusCode::kInfeasible: return "infeasible";
    case StatusCode::kParseError: return "parse error";
    case StatusCode::kIoError: return "i/o error";
    case StatusCode::kCudaError: return "CUDA error";
  }
  return "unknown status";
}

class Status {
 public:
  constexpr Status() = default;
  constexpr Status(StatusCode code, const char* detail) : code_(code), detail_(detail) {}

  static constexpr Status success() { return Status(); }

  constexpr bool ok() const { return code_ == StatusCode::kSuccess; }
  constexpr StatusCode code() const { return code_; }
  // What the status is about: a field, argument or CUDA error name. Never null.
  constexpr const char* detail() const { return detail_; }

  friend constexpr bool operator==(Status a, StatusCode b) { return a.code_ == b; }
  friend constexpr bool operator!=(Status a, StatusCode b) { return a.code_ != b; }

 private:
  StatusCode code_ = StatusCode::kSuccess;
  const char* detail_ = "";
};

// "invalid value: k_max must be positive"
inline std::string to_string(Status status) {
  std::string text = to_string(status.code());
  if (status.detail()[0] != '\0') {
    text += ": ";
    text += status.detail();
  }
  return text;
}

HYLRA_NAMESPACE_END

// Returns the Status of `expr` from the enclosing function when it is not success.
#define HYLRA_RETURN_IF_ERROR(expr)                      \
  do {                                                   \
    const ::hylra::Status hylra_status_ = (expr);        \
    if (!hylra_status_.ok()) return hylra_status_;       \
  } while (0)

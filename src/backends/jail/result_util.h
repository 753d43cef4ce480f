#pragma once

#include <utility>

#include "common/error.h"

// Propagates the error of a Result-returning expression from a function that returns Result<T>.
// The jail's pipelines are long sequences of fallible steps; this keeps each one a single line,
// in the manner of nsjail's RETURN_ON_FAILURE.
#define JAIL_RETURN_IF_ERROR(expr)                              \
  do {                                                          \
    if (auto jail_result_ = (expr); !jail_result_) {            \
      return ::agentbox::Fail(std::move(jail_result_).error()); \
    }                                                           \
  } while (0)

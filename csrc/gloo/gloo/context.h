// See ../README.md: declarations only, for including c10d's ProcessGroupGloo.hpp.
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  // Named by an inline member of ProcessGroupGloo that csrc/c10d.cpp never calls.
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo

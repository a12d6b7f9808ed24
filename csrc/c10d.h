// Handles shared by csrc/c10d.cpp (TCPStore, Gloo and every collective) and csrc/cuda.cpp (NCCL,
// in the CUDA shared object): both create a `c10d::Backend`, and the CPU side runs collectives on
// either through its virtual methods.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

struct UgatitStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct UgatitGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
};

struct UgatitWork {
  c10::intrusive_ptr<c10d::Work> work;
};

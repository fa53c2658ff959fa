// IndexBuffer: slots shared by producers whose lists are never live together, fixed offsets,
// the list views a producer writes and a Select / Reuse layer reads, and argument errors. A
// randomized check compares every plan with a brute-force count of the lists live at each layer.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "hylra/reuse/index_buffer.hpp"

using namespace hylra;
namespace pol = hylra::policy;

namespace {

pol::Policy make(std::vector<pol::LayerPolicy> layers, int k = 2048, int block = 1,
                 pol::IndexScope scope = pol::IndexScope::kPerKvHead) {
  pol::Policy p;
  p.num_layers = static_cast<int>(layers.size());
  p.selection = {k, block, scope};
  for (int i = 0; i < p.num_layers; ++i) p[i] = layers[i];
  return p;
}

// A random valid policy: Dense first layers, then producers and Reuse layers of random earlier
// producers.
pol::Policy random_policy(std::mt19937& rng) {
  const int layers = std::uniform_int_distribution<int>(1, 40)(rng);
  std::vector<pol::LayerPolicy> kinds;
  std::vector<int> producers;
  for (int i = 0; i < layers; ++i) {
    const int pick = std::uniform_int_distribution<int>(0, 9)(rng);
    if (pick == 0) {
      kinds.push_back(pol::dense());
    } else if (producers.empty() || pick <= 3) {
      kinds.push_back(pick % 2 ? pol::select() : pol::dense_select());
      producers.push_back(i);
    } else {
      kinds.push_back(pol::reuse(producers[std::uniform_int_distribution<std::size_t>(0, producers.size() - 1)(rng)]));
    }
  }
  return make(kinds, 7, 1);
}

}  // namespace

TEST_CASE("a chain of producers, each followed by its readers, needs one slot") {
  // Example 02's policy: Dense, Select, Reuse(1) x2, Select, Reuse(4) x3.
  const auto p = make({pol::dense(), pol::select(), pol::reuse(1), pol::reuse(1), pol::select(), pol::reuse(4),
                       pol::reuse(4), pol::reuse(4)});
  IndexBuffer b;
  REQUIRE(IndexBuffer::plan(p, 4, 8, &b).ok());
  CHECK(b.num_slots() == 1);
  CHECK(b.list_heads() == 8);
  CHECK(b.list_elements() == 4u * 8u * 2048u);
  CHECK(b.bytes() == 4u * 8u * 2048u * 4u);
  const int expected[] = {-1, 0, 0, 0, 0, 0, 0, 0};
  for (int l = 0; l < 8; ++l) CHECK(b.slot_of(l) == expected[l]);
  CHECK(b.slot_of(8) == -1);
  CHECK(b.slot_of(-1) == -1);
}

TEST_CASE("lists live at once get different slots; a dead list's slot is taken again") {
  // 0 S (read by 3), 1 DS (read by 4), 2 Reuse(0), 3 Reuse(0), 4 Reuse(1), 5 S, 6 Reuse(5).
  const auto p = make({pol::select(), pol::dense_select(), pol::reuse(0), pol::reuse(0), pol::reuse(1), pol::select(),
                       pol::reuse(5)});
  IndexBuffer b;
  REQUIRE(IndexBuffer::plan(p, 2, 8, &b).ok());
  CHECK(b.num_slots() == 2);
  CHECK(b.slot_of(0) == 0);
  CHECK(b.slot_of(1) == 1);
  CHECK(b.slot_of(3) == 0);
  CHECK(b.slot_of(4) == 1);
  CHECK(b.slot_of(5) == 0);  // both lists are dead by layer 5: the lowest slot again
  CHECK(b.slot_of(6) == 0);
}

TEST_CASE("writer and reader give fixed views inside the buffer, by kind") {
  const auto p = make({pol::dense(), pol::dense_select(), pol::select(), pol::reuse(1), pol::reuse(2)}, 32, 64,
                      pol::IndexScope::kSharedAcrossHeads);
  IndexBuffer b;
  REQUIRE(IndexBuffer::plan(p, 3, 8, &b).ok());
  REQUIRE(b.num_slots() == 2);
  CHECK(b.list_heads() == 1);
  std::vector<std::int32_t> storage(b.bytes() / sizeof(std::int32_t));
  MutableIndexList out;
  IndexList in;
  REQUIRE(b.writer(1, storage.data(), &out).ok());
  CHECK(out.indices == storage.data() + b.slot_of(1) * b.list_elements());
  CHECK(out.batch_size == 3);
  CHECK(out.num_heads == 1);
  CHECK(out.k_max == 32);
  CHECK(out.block_size == 64);
  CHECK(out.lengths == nullptr);
  REQUIRE(b.reader(3, storage.data(), &in).ok());  // Reuse(1) reads layer 1's list
  CHECK(in.indices == out.indices);
  REQUIRE(b.writer(2, storage.data(), &out).ok());
  REQUIRE(b.reader(2, storage.data(), &in).ok());  // a Select attends over its own list
  CHECK(in.indices == out.indices);
  CHECK(in.indices != storage.data() + b.slot_of(1) * b.list_elements());
  CHECK(validate(in, 8).ok());

  // What a layer of each kind may not do.
  CHECK(b.writer(0, storage.data(), &out) == StatusCode::kInvalidValue);  // Dense
  CHECK(b.writer(3, storage.data(), &out) == StatusCode::kInvalidValue);  // Reuse
  CHECK(b.reader(0, storage.data(), &in) == StatusCode::kInvalidValue);   // Dense
  CHECK(b.reader(1, storage.data(), &in) == StatusCode::kInvalidValue);   // DenseSelect attends densely
  CHECK(b.reader(5, storage.data(), &in) == StatusCode::kInvalidValue);   // past the last layer
  CHECK(b.writer(-1, storage.data(), &out) == StatusCode::kInvalidValue);
  CHECK(b.writer(1, nullptr, &out) == StatusCode::kNullPointer);
  CHECK(b.reader(3, nullptr, &in) == StatusCode::kNullPointer);
}

TEST_CASE("plan rejects invalid policies and shapes") {
  IndexBuffer b;
  CHECK(IndexBuffer::plan(make({pol::dense(), pol::reuse(0)}), 1, 8, &b) == StatusCode::kInvalidPolicy);
  CHECK(IndexBuffer::plan(make({pol::select()}, 0), 1, 8, &b) == StatusCode::kInvalidValue);
  CHECK(IndexBuffer::plan(make({pol::select()}), 0, 8, &b) == StatusCode::kInvalidShape);
  CHECK(IndexBuffer::plan(make({pol::select()}), 1, 0, &b) == StatusCode::kInvalidShape);
  pol::Policy empty;
  CHECK(IndexBuffer::plan(empty, 1, 8, &b) == StatusCode::kInvalidShape);
  // A policy of Dense layers only needs no slot and no memory.
  REQUIRE(IndexBuffer::plan(make({pol::dense(), pol::dense()}), 2, 8, &b).ok());
  CHECK(b.num_slots() == 0);
  CHECK(b.bytes() == 0);
}

TEST_CASE("random policies: readers share their producer's slot, nothing overwrites a live list, fewest slots") {
  std::mt19937 rng(20261129);
  for (int trial = 0; trial < 2000; ++trial) {
    const pol::Policy p = random_policy(rng);
    REQUIRE(pol::validate(p).ok());
    IndexBuffer b;
    REQUIRE(IndexBuffer::plan(p, 2, 4, &b).ok());
    CAPTURE(trial);
    // Each producer's live interval [producer, last reader].
    std::vector<int> last(p.num_layers, -1);
    for (int i = 0; i < p.num_layers; ++i) {
      if (pol::is_producer(p[i].kind)) last[i] = i;
      if (p[i].kind == pol::LayerKind::kReuse) last[p[i].source] = std::max(last[p[i].source], i);
    }
    int most_live = 0;
    for (int i = 0; i < p.num_layers; ++i) {
      int live = 0;
      for (int q = 0; q <= i; ++q) live += last[q] >= i && pol::is_producer(p[q].kind);
      most_live = std::max(most_live, live);
      if (p[i].kind == pol::LayerKind::kDense) CHECK(b.slot_of(i) == -1);
      if (p[i].kind == pol::LayerKind::kReuse) CHECK(b.slot_of(i) == b.slot_of(p[i].source));
      if (!pol::is_producer(p[i].kind)) continue;
      REQUIRE(b.slot_of(i) >= 0);
      REQUIRE(b.slot_of(i) < b.num_slots());
      // No other producer writes this slot while layer i's list is live.
      for (int q = i + 1; q <= last[i]; ++q)
        if (pol::is_producer(p[q].kind)) CHECK(b.slot_of(q) != b.slot_of(i));
    }
    CHECK(b.num_slots() == most_live);
  }
}

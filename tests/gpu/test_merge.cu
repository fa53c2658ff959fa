// MergeStates against reference::merge_states: fp32 and half partial states, empty (-inf) states
// holding garbage, rows whose states are all empty, rows whose states are dealt to several thread
// groups (more than 8 states, some groups seeing only empty states), head dims 12 (threads left
// over in a CTA), 64, 128 and 256.
#include "gpu/test_decode_common.cuh"

#include <limits>

#include "hylra/attention/merge.cuh"
#include "hylra/reference/attention.hpp"

using namespace hylra;
using namespace decode_test;

TEST_CASE_TEMPLATE("merge of partial states matches the reference", TIn, float, half) {
  std::mt19937 rng(71);
  for (int dim : {12, 64, 128, 256}) {
    for (int states : {1, 2, 7, 9, 33, 200}) {
      CAPTURE(dim);
      CAPTURE(states);
      const int rows = 37;
      auto o = random_values<TIn>(static_cast<std::size_t>(rows) * states * dim, rng);
      std::vector<float> lse(static_cast<std::size_t>(rows) * states);
      std::normal_distribution<float> normal(0.0f, 4.0f);
      for (float& x : lse) x = normal(rng);
      for (int s = 0; s < states; ++s) lse[5 * states + s] = -std::numeric_limits<float>::infinity();  // row 5 empty
      lse[2 * states] = -std::numeric_limits<float>::infinity();  // an empty state with garbage O
      for (int i = 0; i < dim; ++i) o[2 * states * dim + i] = from_float<TIn>(std::numeric_limits<float>::quiet_NaN());
      for (int s = 1; s < states; s += 2) lse[7 * states + s] = -std::numeric_limits<float>::infinity();  // row 7: odd states empty

      DeviceBuffer<TIn> d_o(o);
      DeviceBuffer<float> d_lse(lse), d_lse_out(rows);
      DeviceBuffer<__nv_bfloat16> d_out(static_cast<std::size_t>(rows) * dim);
      d_out.poison();
      d_lse_out.poison();
      typename MergeStates<TIn, __nv_bfloat16>::Arguments args;
      args.states = d_o.ptr;
      args.lse = d_lse.ptr;
      args.num_rows = rows;
      args.num_states = states;
      args.head_dim = dim;
      args.out = d_out.ptr;
      args.lse_out = d_lse_out.ptr;
      DECODE_TEST_OK(MergeStates<TIn, __nv_bfloat16>::run(args, nullptr, 0, nullptr));
      DECODE_TEST_CUDA(cudaDeviceSynchronize());

      std::vector<float> ref(static_cast<std::size_t>(rows) * dim), ref_lse(rows);
      DECODE_TEST_OK(reference::merge_states(o.data(), lse.data(), rows, states, dim, ref.data(), ref_lse.data()));
      CHECK(max_row_rel_error(d_out.to_host(), ref, dim) <= kOutputTolerance<__nv_bfloat16>);
      CHECK(max_lse_error(d_lse_out.to_host(), ref_lse) <= kLseTolerance);
    }
  }
}

TEST_CASE("merge reports bad arguments") {
  DeviceBuffer<float> o(64), lse(4);
  DeviceBuffer<half> out(64);
  MergeStates<float, half>::Arguments args;
  args.states = o.ptr;
  args.lse = lse.ptr;
  args.num_rows = 1;
  args.num_states = 1;
  args.head_dim = 64;
  args.out = out.ptr;
  REQUIRE(MergeStates<float, half>::can_implement(args).ok());
  auto a = args;
  a.out = nullptr;
  CHECK(MergeStates<float, half>::can_implement(a) == StatusCode::kNullPointer);
  a = args;
  a.head_dim = 66;
  CHECK(MergeStates<float, half>::can_implement(a) == StatusCode::kNotSupported);
  a = args;
  a.num_states = 0;
  CHECK(MergeStates<float, half>::can_implement(a) == StatusCode::kInvalidShape);
  a = args;
  a.out = out.ptr + 2;
  CHECK(MergeStates<float, half>::can_implement(a) == StatusCode::kMisaligned);
}

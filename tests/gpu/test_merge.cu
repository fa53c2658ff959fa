// MergeStates and MergeStateList against reference::merge_states: fp32 and half partial states, empty (-inf) states
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

// MergeStateList reads each input from its own tensor: the packed reference on a host copy of
// the same values must agree. Inputs hold empty rows, garbage behind empty states, and one input
// row that is the only non-empty state.
TEST_CASE_TEMPLATE("merge of separate state tensors matches the reference", TIn, float, __nv_bfloat16) {
  std::mt19937 rng(1234);
  const float inf = std::numeric_limits<float>::infinity();
  for (int dim : {64, 128}) {
    for (int inputs : {1, 2, 3, 8}) {
      CAPTURE(dim);
      CAPTURE(inputs);
      const int rows = 45;
      std::vector<std::vector<TIn>> o(inputs);
      std::vector<std::vector<float>> lse(inputs, std::vector<float>(rows));
      std::normal_distribution<float> normal(0.0f, 4.0f);
      for (int i = 0; i < inputs; ++i) {
        o[i] = random_values<TIn>(static_cast<std::size_t>(rows) * dim, rng);
        for (float& x : lse[i]) x = normal(rng);
        lse[i][3] = -inf;                                   // row 3: every state empty
        if (i > 0) lse[i][9] = -inf;                        // row 9: only input 0 has tokens
        if (i == inputs - 1 && inputs > 1) {                // an empty state with NaN behind it
          lse[i][11] = -inf;
          for (int e = 0; e < dim; ++e) o[i][11 * dim + e] = from_float<TIn>(std::numeric_limits<float>::quiet_NaN());
        }
      }
      std::vector<TIn> packed(static_cast<std::size_t>(rows) * inputs * dim);
      std::vector<float> packed_lse(static_cast<std::size_t>(rows) * inputs);
      for (int r = 0; r < rows; ++r)
        for (int i = 0; i < inputs; ++i) {
          packed_lse[r * inputs + i] = lse[i][r];
          for (int e = 0; e < dim; ++e) packed[(static_cast<std::size_t>(r) * inputs + i) * dim + e] = o[i][r * dim + e];
        }

      DeviceBuffer<TIn> d_o[MergeStateList<TIn, half>::kMaxInputs];
      DeviceBuffer<float> d_lse[MergeStateList<TIn, half>::kMaxInputs];
      for (int i = 0; i < inputs; ++i) {
        d_o[i] = DeviceBuffer<TIn>(o[i]);
        d_lse[i] = DeviceBuffer<float>(lse[i]);
      }
      DeviceBuffer<half> d_out(static_cast<std::size_t>(rows) * dim);
      DeviceBuffer<float> d_lse_out(rows);
      d_out.poison();
      d_lse_out.poison();
      typename MergeStateList<TIn, half>::Arguments args;
      for (int i = 0; i < inputs; ++i) {
        args.states[i] = d_o[i].ptr;
        args.lse[i] = d_lse[i].ptr;
      }
      args.num_inputs = inputs;
      args.num_rows = rows;
      args.head_dim = dim;
      args.out = d_out.ptr;
      args.lse_out = d_lse_out.ptr;
      DECODE_TEST_OK(MergeStateList<TIn, half>::run(args, nullptr, 0, nullptr));
      DECODE_TEST_CUDA(cudaDeviceSynchronize());

      std::vector<float> ref(static_cast<std::size_t>(rows) * dim), ref_lse(rows);
      DECODE_TEST_OK(reference::merge_states(packed.data(), packed_lse.data(), rows, inputs, dim, ref.data(), ref_lse.data()));
      const auto out = d_out.to_host();
      CHECK(max_row_rel_error(out, ref, dim) <= kOutputTolerance<half>);
      CHECK(max_lse_error(d_lse_out.to_host(), ref_lse) <= kLseTolerance);
      for (int e = 0; e < dim; ++e) CHECK(to_float(out[3 * dim + e]) == 0.0f);  // all empty: zeros
    }
  }
}

TEST_CASE("merge of separate tensors reports bad arguments") {
  DeviceBuffer<float> o(64), lse(1);
  DeviceBuffer<half> out(64);
  MergeStateList<float, half>::Arguments args;
  args.states[0] = o.ptr;
  args.lse[0] = lse.ptr;
  args.states[1] = o.ptr;
  args.lse[1] = lse.ptr;
  args.num_inputs = 2;
  args.num_rows = 1;
  args.head_dim = 64;
  args.out = out.ptr;
  REQUIRE(MergeStateList<float, half>::can_implement(args).ok());
  auto a = args;
  a.num_inputs = 0;
  CHECK(MergeStateList<float, half>::can_implement(a) == StatusCode::kInvalidValue);
  a.num_inputs = MergeStateList<float, half>::kMaxInputs + 1;
  CHECK(MergeStateList<float, half>::can_implement(a) == StatusCode::kInvalidValue);
  a = args;
  a.num_inputs = 3;  // input 2 was never set
  CHECK(MergeStateList<float, half>::can_implement(a) == StatusCode::kNullPointer);
  a = args;
  a.states[1] = o.ptr + 1;
  CHECK(MergeStateList<float, half>::can_implement(a) == StatusCode::kMisaligned);
  a = args;
  a.out = nullptr;
  CHECK(MergeStateList<float, half>::can_implement(a) == StatusCode::kNullPointer);
  a = args;
  a.head_dim = 2048;
  CHECK(MergeStateList<float, half>::can_implement(a) == StatusCode::kNotSupported);
}

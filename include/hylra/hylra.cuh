// hylra umbrella header: every public building block. Engines that use one or two pieces can
// include those headers alone (see README's map); this one is for getting started.
#pragma once

#include "hylra/version.hpp"

#include "hylra/core/dispatch.hpp"
#include "hylra/core/dtype.hpp"
#include "hylra/core/launch.hpp"
#include "hylra/core/status.hpp"
#include "hylra/core/vec.cuh"

#include "hylra/layout/index_list.hpp"
#include "hylra/layout/kv_cache.hpp"

#include "hylra/topk/batched_topk.cuh"
#include "hylra/topk/block_pooling.cuh"
#include "hylra/topk/block_topk.cuh"

#include "hylra/attention/decode.cuh"
#include "hylra/attention/dense_scores.cuh"
#include "hylra/attention/gather.cuh"
#include "hylra/attention/merge.cuh"

#include "hylra/policy/policy_json.hpp"
#include "hylra/policy/similarity_io.hpp"
#include "hylra/policy/solvers.hpp"
#include "hylra/policy/summary.hpp"
#include "hylra/reuse/index_buffer.hpp"
#include "hylra/runtime/hybrid_attention.cuh"

#include "hylra/io/json.hpp"
#include "hylra/io/npy.hpp"

#include "hylra/trace/synthetic.hpp"
#include "hylra/trace/trace.hpp"

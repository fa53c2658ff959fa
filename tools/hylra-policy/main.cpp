// hylra-policy: similarity + sensitivity -> per-layer HyLRA policy file, with a readable summary.
// See README.md next to this file for the file formats and examples.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "hylra/policy/policy_json.hpp"
#include "hylra/policy/similarity_io.hpp"
#include "hylra/policy/solvers.hpp"
#include "hylra/policy/summary.hpp"

using namespace hylra;
using namespace hylra::policy;

namespace {

constexpr const char* kUsage = R"(usage:
  hylra-policy (--input SIM | --topk IDX) --solver NAME [solver options] --k K [options]
  hylra-policy --check POLICY [--input SIM] [--costs D,DS,S,R]
  hylra-policy --help

Derives a per-layer policy (Dense / DenseSelect / Select / Reuse) from a layer similarity
matrix and per-layer sensitivity, writes it as JSON and prints a summary.

inputs:
  --input FILE            similarity: .json (hylra.similarity, may carry sensitivity) or an
                          L x L float32/float64 .npy
  --topk FILE             build the similarity from per-layer top-k index sets: an int32/int64
                          .npy [layers, rows, k] (rows: decode steps x heads; -1 pads)
  --sensitive FILE        .npy per-layer mask (uint8/int32/int64, nonzero = sensitive), or
                          float RNMSE values (then --max-rnmse applies)
  --sensitive-layers LIST comma-separated layer ids, e.g. 0,1,31 (adds to the file's mask)
  --max-rnmse X           a layer whose RNMSE exceeds X is sensitive (needs RNMSE values)

solvers (--solver NAME):
  threshold      --theta T             fewest producers with every reuse edge >= T (HyLRA)
  switch-budget  --max-producers C     at most C producers; best worst edge, then sum
  anchors        --anchors K           exactly K producers; best total similarity
  jump           --n N                 a producer every N layers (baseline)
  cost           --theta T --costs D,DS,S,R [--max-producers C]
                                       least predicted cost with every edge >= T

policy options:
  --k K                   top-k size of Select/DenseSelect layers (required with --solver)
  --block-size B          tokens per selected id (default 1)
  --scope per_kv_head|shared   index lists per KV head (default) or shared by all heads
  --sensitive-kind dense|dense-select|either   what sensitive layers may be (default dense)
  --tolerant-dense        let tolerant layers be Dense/DenseSelect too (cost solver)
  --costs D,DS,S,R        per-layer cost of Dense, DenseSelect, Select, Reuse (summary too)

output:
  --output FILE           write the policy JSON here (default: not written)
  --quiet                 no summary

exit status: 0 success, 1 a file or the solver failed, 2 bad arguments.
)";

struct Options {
  std::string input, topk, sensitive_file, sensitive_layers, solver, output, check, costs_text;
  std::string scope = "per_kv_head", sensitive_kind = "dense";
  double theta = 0.0, max_rnmse = -1.0;
  bool has_theta = false, has_max_rnmse = false, tolerant_dense = false, quiet = false;
  int max_producers = -1, anchors = -1, n = 0, k = 0, block_size = 1;
  KindCosts costs;
  bool has_costs = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "hylra-policy: %s (try --help)\n", message.c_str());
  std::exit(2);
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "hylra-policy: %s\n", message.c_str());
  std::exit(1);
}

double parse_double(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v == v)) usage_error(flag + ": expected a number, got '" + text + "'");
  return v;
}

int parse_int(const std::string& flag, const std::string& text, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi)
    usage_error(flag + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + text + "'");
  return static_cast<int>(v);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == ',') parts.emplace_back();
    else parts.back() += c;
  }
  return parts;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (flag == "--input") o.input = value();
    else if (flag == "--topk") o.topk = value();
    else if (flag == "--sensitive") o.sensitive_file = value();
    else if (flag == "--sensitive-layers") o.sensitive_layers = value();
    else if (flag == "--max-rnmse") { o.max_rnmse = parse_double(flag, value()); o.has_max_rnmse = true; }
    else if (flag == "--solver") o.solver = value();
    else if (flag == "--theta") { o.theta = parse_double(flag, value()); o.has_theta = true; }
    else if (flag == "--max-producers") o.max_producers = parse_int(flag, value(), 0, kMaxLayers);
    else if (flag == "--anchors") o.anchors = parse_int(flag, value(), 0, kMaxLayers);
    else if (flag == "--n") o.n = parse_int(flag, value(), 1, kMaxLayers);
    else if (flag == "--k") o.k = parse_int(flag, value(), 1, kMaxSelectionK);
    else if (flag == "--block-size") o.block_size = parse_int(flag, value(), 1, kMaxBlockSize);
    else if (flag == "--scope") o.scope = value();
    else if (flag == "--sensitive-kind") o.sensitive_kind = value();
    else if (flag == "--tolerant-dense") o.tolerant_dense = true;
    else if (flag == "--costs") o.costs_text = value();
    else if (flag == "--output") o.output = value();
    else if (flag == "--check") o.check = value();
    else if (flag == "--quiet") o.quiet = true;
    else usage_error("unknown argument '" + flag + "'");
  }
  if (!o.costs_text.empty()) {
    const std::vector<std::string> parts = split(o.costs_text);
    if (parts.size() != 4) usage_error("--costs: expected four numbers D,DS,S,R, got '" + o.costs_text + "'");
    o.costs = KindCosts{parse_double("--costs", parts[0]), parse_double("--costs", parts[1]), parse_double("--costs", parts[2]),
                        parse_double("--costs", parts[3])};
    if (!validate(o.costs).ok()) usage_error("--costs: costs must be finite and non-negative");
    o.has_costs = true;
  }
  if (o.scope != "per_kv_head" && o.scope != "shared") usage_error("--scope: expected per_kv_head or shared, got '" + o.scope + "'");
  if (o.sensitive_kind != "dense" && o.sensitive_kind != "dense-select" && o.sensitive_kind != "either")
    usage_error("--sensitive-kind: expected dense, dense-select or either, got '" + o.sensitive_kind + "'");
  if (!o.check.empty()) {
    if (!o.solver.empty()) usage_error("--check and --solver are exclusive");
    if (!o.input.empty() && !o.topk.empty()) usage_error("give at most one of --input and --topk");
    return o;
  }
  if (o.input.empty() == o.topk.empty()) usage_error("give one of --input and --topk");
  if (o.solver.empty()) usage_error("--solver is required");
  if (o.k == 0) usage_error("--k is required");
  const std::string& s = o.solver;
  if (s == "threshold" || s == "cost") {
    if (!o.has_theta) usage_error("--solver " + s + " needs --theta");
    if (s == "cost" && !o.has_costs) usage_error("--solver cost needs --costs");
  } else if (s == "switch-budget") {
    if (o.max_producers < 0) usage_error("--solver switch-budget needs --max-producers");
  } else if (s == "anchors") {
    if (o.anchors < 0) usage_error("--solver anchors needs --anchors");
  } else if (s == "jump") {
    if (o.n == 0) usage_error("--solver jump needs --n");
  } else {
    usage_error("--solver: expected threshold, switch-budget, anchors, jump or cost, got '" + s + "'");
  }
  return o;
}

// Loads the similarity file and combines every source of sensitivity into data->sensitive.
SimilarityData load_inputs(const Options& o) {
  SimilarityData data;
  std::string error;
  const Status read = o.topk.empty() ? read_similarity_file(o.input, &data, &error) : read_topk_similarity_npy(o.topk, &data, &error);
  if (!read.ok()) fail(error);
  if (!o.sensitive_file.empty()) {
    std::vector<char> mask;
    std::vector<double> rnmse;
    if (!read_layer_vector_npy(o.sensitive_file, data.num_layers, &mask, &rnmse, &error).ok()) fail(error);
    if (!mask.empty()) data.sensitive = mask;
    if (!rnmse.empty()) data.rnmse = rnmse;
  }
  if (o.has_max_rnmse) {
    if (data.rnmse.empty()) usage_error("--max-rnmse needs RNMSE values (in the --input JSON or a float --sensitive .npy)");
    std::vector<char> mask(data.num_layers);
    if (!sensitivity_from_rnmse(data.rnmse.data(), data.num_layers, o.max_rnmse, reinterpret_cast<bool*>(mask.data())).ok())
      usage_error("--max-rnmse: expected a non-negative number");
    if (data.sensitive.empty()) data.sensitive = mask;
    for (int i = 0; i < data.num_layers; ++i) data.sensitive[i] = data.sensitive[i] || mask[i];
  }
  if (!o.sensitive_layers.empty()) {
    if (data.sensitive.empty()) data.sensitive.assign(data.num_layers, 0);
    for (const std::string& part : split(o.sensitive_layers)) data.sensitive[parse_int("--sensitive-layers", part, 0, data.num_layers - 1)] = 1;
  }
  return data;
}

io::JsonValue provenance_of(const Options& o) {
  io::JsonValue p = io::JsonValue::object();
  p.set("tool", io::JsonValue::string("hylra-policy"));
  p.set("input", io::JsonValue::string(o.topk.empty() ? o.input : o.topk));
  p.set("solver", io::JsonValue::string(o.solver));
  if (o.has_theta) p.set("theta", io::JsonValue::number(o.theta));
  if (o.max_producers >= 0) p.set("max_producers", io::JsonValue::integer(o.max_producers));
  if (o.anchors >= 0) p.set("anchors", io::JsonValue::integer(o.anchors));
  if (o.n > 0) p.set("n", io::JsonValue::integer(o.n));
  if (o.has_costs) {
    io::JsonValue c = io::JsonValue::object();
    c.set("dense", io::JsonValue::number(o.costs.dense));
    c.set("dense_select", io::JsonValue::number(o.costs.dense_select));
    c.set("select", io::JsonValue::number(o.costs.select));
    c.set("reuse", io::JsonValue::number(o.costs.reuse));
    p.set("costs", std::move(c));
  }
  p.set("sensitive_kind", io::JsonValue::string(o.sensitive_kind));
  return p;
}

Policy solve(const Options& o, const SimilarityData& data) {
  PolicyInputs in;
  in.similarity = data.view();
  in.sensitive = data.sensitive_mask();
  in.sensitive_kinds = o.sensitive_kind == "dense" ? KindSet().with(LayerKind::kDense)
                       : o.sensitive_kind == "dense-select" ? KindSet().with(LayerKind::kDenseSelect)
                                                             : KindSet().with(LayerKind::kDense).with(LayerKind::kDenseSelect);
  if (o.tolerant_dense) in.tolerant_kinds = KindSet::all();
  in.selection = SelectionParams{o.k, o.block_size, o.scope == "shared" ? IndexScope::kSharedAcrossHeads : IndexScope::kPerKvHead};
  Policy p;
  Status s;
  if (o.solver == "threshold") s = solve_threshold(in, o.theta, &p);
  else if (o.solver == "switch-budget") s = solve_switch_budget(in, o.max_producers, &p);
  else if (o.solver == "anchors") s = solve_anchors(in, o.anchors, &p);
  else if (o.solver == "jump") s = jump_n(in, o.n, &p);
  else s = solve_cost_aware(in, o.theta, o.costs, o.max_producers, &p);
  if (!s.ok()) fail("solver " + o.solver + ": " + to_string(s));
  return p;
}

std::string format_double(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

// Counts, reuse chains (a producer and the layers reading it), similarities and predicted cost.
void print_summary(const Policy& p, const SimilarityData* data, const Options& o) {
  std::printf("layers: %d   k: %d   block_size: %d   scope: %s\n", p.num_layers, p.selection.k, p.selection.block_size, to_string(p.selection.scope));
  std::printf("kinds:  Dense %d   DenseSelect %d   Select %d   Reuse %d   (producers %d)\n", p.count(LayerKind::kDense), p.count(LayerKind::kDenseSelect),
              p.count(LayerKind::kSelect), p.count(LayerKind::kReuse), p.num_producers());
  std::string pattern;
  if (to_share_pattern(p, &pattern).ok()) std::printf("pattern: %s\n", pattern.c_str());
  std::printf("reuse chains:\n");
  for (int src = 0; src < p.num_layers; ++src) {
    if (!is_producer(p.layers[src].kind)) continue;
    std::string line = "  " + std::to_string(src) + " (" + to_string(p.layers[src].kind) + ")";
    int readers = 0;
    for (int j = src + 1; j < p.num_layers; ++j) {
      if (p.layers[j].kind != LayerKind::kReuse || p.layers[j].source != src) continue;
      line += (readers++ ? ", " : " -> ") + std::to_string(j);
      if (data != nullptr) line += " (" + format_double(data->view()(src, j)) + ")";
    }
    if (readers == 0) line += " (no readers)";
    std::printf("%s\n", line.c_str());
  }
  std::string dense_layers;
  for (int i = 0; i < p.num_layers; ++i)
    if (p.layers[i].kind == LayerKind::kDense) dense_layers += (dense_layers.empty() ? "" : ", ") + std::to_string(i);
  if (!dense_layers.empty()) std::printf("dense layers: %s\n", dense_layers.c_str());
  if (data != nullptr) {
    const PolicyStats s = summarize(p, data->view(), o.costs);
    if (s.reuse_edges > 0)
      std::printf("reuse edges: %d   min similarity %s   mean %s\n", s.reuse_edges, format_double(s.min_edge).c_str(), format_double(s.sum_edge / s.reuse_edges).c_str());
    if (o.has_costs) {
      const double all_dense = o.costs.dense * p.num_layers;
      std::printf("predicted cost: %s   (all Dense: %s, ratio %s)\n", format_double(s.cost).c_str(), format_double(all_dense).c_str(),
                  all_dense > 0 ? format_double(s.cost / all_dense).c_str() : "n/a");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) usage_error("no arguments");
  const Options o = parse_args(argc, argv);
  std::string error;
  if (!o.check.empty()) {
    Policy p;
    io::JsonValue provenance;
    if (!read_policy_file(o.check, &p, &error, &provenance).ok()) fail(error);
    SimilarityData data;
    const bool with_data = !o.input.empty() || !o.topk.empty();
    if (with_data) {
      data = load_inputs(o);
      if (data.num_layers != p.num_layers)
        fail(o.check + ": the policy has " + std::to_string(p.num_layers) + " layers, the similarity has " + std::to_string(data.num_layers));
      int bad = -1;
      const Status s = validate(p, data.sensitive_mask(), &bad);
      if (!s.ok()) fail(o.check + ": layer " + std::to_string(bad) + ": " + to_string(s));
    }
    if (!o.output.empty()) {
      const Status s = write_policy_file(o.output, p, provenance.is_object() ? &provenance : nullptr);
      if (!s.ok()) fail(o.output + ": " + to_string(s));
    }
    if (!o.quiet) print_summary(p, with_data ? &data : nullptr, o);
    return 0;
  }
  const SimilarityData data = load_inputs(o);
  const Policy p = solve(o, data);
  if (!o.output.empty()) {
    const io::JsonValue provenance = provenance_of(o);
    const Status s = write_policy_file(o.output, p, &provenance);
    if (!s.ok()) fail(o.output + ": " + to_string(s));
  }
  if (!o.quiet) print_summary(p, &data, o);
  return 0;
}

# ctest driver for the hylra-policy CLI: derive a policy from the example similarity (JSON and
# .npy), read it back and write it again byte-identically, and check that bad files and arguments
# fail with the documented exit status and a message naming the culprit.
#   cmake -DTOOL=<hylra-policy> -DDATA=<this folder> -DWORK=<scratch dir> -P cli_test.cmake

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# run(<expected exit code> <stdout/stderr must match regex> args...)
function(run expected_rc regex)
  execute_process(COMMAND "${TOOL}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "hylra-policy ${ARGN}: exit ${rc}, expected ${expected_rc}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "hylra-policy ${ARGN}: output does not match '${regex}':\n${out}${err}")
  endif()
endfunction()

set(sim "${DATA}/example_similarity.json")
run(0 "pattern: DCSSCSSS" --input "${sim}" --solver threshold --theta 0.8 --k 2048 --output "${WORK}/p1.json")
run(0 "1 \\(Select\\) -> 2 \\(0.9\\), 3 \\(0.85\\)" --check "${WORK}/p1.json" --input "${sim}" --output "${WORK}/p2.json")
file(READ "${WORK}/p1.json" p1)
file(READ "${WORK}/p2.json" p2)
if(NOT p1 STREQUAL p2)
  message(FATAL_ERROR "policy changed on a read/write round trip:\n${p1}\n---\n${p2}")
endif()
if(NOT p1 MATCHES "\"format\": \"hylra.policy\"" OR NOT p1 MATCHES "\"solver\": \"threshold\"")
  message(FATAL_ERROR "policy file lacks its format or provenance:\n${p1}")
endif()

# The same policy from the .npy inputs.
run(0 "pattern: DCSSCSSS" --input "${DATA}/example_similarity.npy" --sensitive "${DATA}/example_sensitive.npy"
    --solver threshold --theta 0.8 --k 2048 --output "${WORK}/p3.json")
file(READ "${WORK}/p3.json" p3)
string(REGEX REPLACE "\"input\": \"[^\"]*\"" "" p1_no_input "${p1}")
string(REGEX REPLACE "\"input\": \"[^\"]*\"" "" p3_no_input "${p3}")
if(NOT p1_no_input STREQUAL p3_no_input)
  message(FATAL_ERROR ".npy and JSON inputs gave different policies:\n${p1}\n---\n${p3}")
endif()

# The similarity built from per-layer top-k index sets (3 groups of layers drifting slightly).
run(0 "pattern: DCSSCSSS.*min similarity 0.7188" --topk "${DATA}/example_topk.npy" --solver threshold --theta 0.7 --k 16 --sensitive-layers 0)
run(2 "give one of --input and --topk" --input "${sim}" --topk "${DATA}/example_topk.npy" --solver threshold --theta 0.7 --k 16)
run(1 "example_similarity.npy: expected top-k indices of shape" --topk "${DATA}/example_similarity.npy" --solver threshold --theta 0.7 --k 16)

# Every solver runs; the summary reports cost when costs are given.
run(0 "producers 2" --input "${sim}" --solver switch-budget --max-producers 2 --k 64)
run(0 "producers 3" --input "${sim}" --solver anchors --anchors 3 --k 64)
run(0 "pattern: DCSCSSCS" --input "${sim}" --solver jump --n 3 --k 64)
run(0 "predicted cost: 47" --input "${sim}" --solver cost --theta 0.85 --costs 10,11,4,1 --max-producers 1 --tolerant-dense --k 64)
run(0 "DenseSelect 1" --input "${sim}" --solver threshold --theta 0.8 --k 64 --sensitive-kind dense-select)
run(0 "dense layers: 0, 3" --input "${sim}" --solver threshold --theta 0.8 --k 64 --sensitive-layers 3)
run(0 "dense layers: 0, 4" --input "${sim}" --solver threshold --theta 0.8 --k 64 --max-rnmse 0.025)

# Bad arguments: exit 2, naming the argument.
run(2 "unknown argument '--thetta'" --input "${sim}" --solver threshold --thetta 0.8 --k 64)
run(2 "--solver threshold needs --theta" --input "${sim}" --solver threshold --k 64)
run(2 "--k: expected an integer" --input "${sim}" --solver threshold --theta 0.8 --k 0)
run(2 "--solver: expected threshold" --input "${sim}" --solver magic --k 64)
run(2 "--costs: expected four numbers" --input "${sim}" --solver cost --theta 0.5 --costs 1,2 --k 64)
run(2 "--sensitive-layers: expected an integer in \\[0, 7\\]" --input "${sim}" --solver threshold --theta 0.8 --k 64 --sensitive-layers 9)
run(2 "no arguments")
run(0 "usage:" --help)

# Bad files: exit 1, naming the file, the field and the position.
file(WRITE "${WORK}/bad_sim.json" "{\"format\": \"hylra.similarity\", \"version\": 1, \"num_layers\": 2,\n \"similarity\": [[1, 0.5], [0, 7]]}\n")
run(1 "bad_sim.json: line 2, column 31 \\(byte [0-9]+\\) at \\$.similarity\\[1\\]\\[1\\]: expected a number in \\[0, 1\\], got 7"
    --input "${WORK}/bad_sim.json" --solver threshold --theta 0.5 --k 64)
file(WRITE "${WORK}/truncated.json" "{\"format\": \"hylra.policy\", \"version\": 1, \"layers\": [")
run(1 "truncated.json: line 1, column 53 \\(byte 52\\) at \\$.layers\\[0\\]: unexpected end of input" --check "${WORK}/truncated.json")
string(REPLACE "\"source\": 1" "\"source\": 5" p_bad "${p1}")
file(WRITE "${WORK}/bad_source.json" "${p_bad}")
run(1 "bad_source.json: line [0-9]+, column [0-9]+ \\(byte [0-9]+\\) at \\$.layers\\[2\\]: reuse source is not an earlier layer" --check "${WORK}/bad_source.json")
run(1 "missing.json: cannot open" --input "${WORK}/missing.json" --solver threshold --theta 0.5 --k 64)
run(1 "solver anchors: infeasible" --input "${sim}" --solver anchors --anchors 8 --k 64)

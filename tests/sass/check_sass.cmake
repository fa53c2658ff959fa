# Fails when a kernel binary holds an instruction form that nvcc 13.0 was seen to miscompile:
# VIMNMX (integer min/max) with a predicate result, which ptxas uses for a clamp such as
# min(max(n, 0), C) followed by a branch on its value. On the H200, with ptxas -O1 or -O3 for
# sm_90 or sm_90a, such a branch took the wrong side in 63 of 64 loop iterations
# (clamp_predicate_repro.cu here; bench/RESULTS.md, session 13). hylra's kernels hold none today;
# if this test fails, a change made ptxas emit one: check the kernel against the reproducer, or
# write the condition without the clamp (e.g. `first + C <= end` instead of `clamped == C`).
#
#   cmake -DCUOBJDUMP=<path> -DBINARIES=<file|file|...> -P check_sass.cmake
cmake_minimum_required(VERSION 3.24)  # the project's; as a script, for its policies
string(REPLACE "|" ";" binaries "${BINARIES}")
if(NOT binaries)
  message(FATAL_ERROR "BINARIES: no files given")
endif()
foreach(binary IN LISTS binaries)
  execute_process(COMMAND "${CUOBJDUMP}" -sass "${binary}" OUTPUT_VARIABLE sass ERROR_QUIET RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "cuobjdump -sass failed on ${binary}")
  endif()
  string(REGEX MATCHALL "VIMNMX[.A-Z0-9]* R[0-9]+, P[0-6][^;]*;" found "${sass}")
  if(found)
    list(GET found 0 first)
    message(FATAL_ERROR "${binary}: VIMNMX with a predicate result (\"${first}\"), an instruction form "
                        "nvcc 13.0 miscompiled; see tests/sass/check_sass.cmake")
  endif()
  string(REGEX MATCHALL "Function : [^\n]*" kernels "${sass}")
  list(LENGTH kernels count)
  if(count EQUAL 0)
    message(FATAL_ERROR "${binary}: no kernels found; is it the binary meant?")
  endif()
  message(STATUS "${binary}: ${count} kernels, none with VIMNMX writing a predicate")
endforeach()

// hylra: hybrid layer-reuse sparse attention for long-context decode.
// The single source of the library version; CMake parses the three defines below.
#pragma once

#define HYLRA_VERSION_MAJOR 0
#define HYLRA_VERSION_MINOR 1
#define HYLRA_VERSION_PATCH 0

#define HYLRA_VERSION (HYLRA_VERSION_MAJOR * 10000 + HYLRA_VERSION_MINOR * 100 + HYLRA_VERSION_PATCH)

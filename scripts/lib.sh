# Shared by scripts/run-pnsd and scripts/run-tests: install what the build needs from Debian,
# then configure and build. Sourced, not run.
set -euo pipefail

PNS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PNS_BUILD=${PNS_BUILD:-$PNS_ROOT/build}

# Everything pns builds or tests with, from Debian 12's archive.
PNS_PACKAGES=(
  build-essential cmake pkg-config clang llvm libclang-rt-14-dev
  libbpf-dev bpftool
  libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libsystemd-dev
  libgtest-dev libgmock-dev
  hyperfine bubblewrap proot
)

pns_install_deps() {
  if [ "$(id -u)" != 0 ]; then
    echo "pns: run as root (installing packages, and pnsd itself, need it)" >&2
    exit 1
  fi
  # Skip apt entirely when everything is already there: dev machines re-run this often.
  if dpkg-query -W -f='${Status}\n' "${PNS_PACKAGES[@]}" 2>/dev/null |
      grep -qv '^install ok installed$' ||
      [ "$(dpkg-query -W -f='${Status}\n' "${PNS_PACKAGES[@]}" 2>/dev/null | wc -l)" -ne "${#PNS_PACKAGES[@]}" ]; then
    echo "pns: installing build dependencies" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${PNS_PACKAGES[@]}" >/dev/null
  fi
}

pns_build() {
  # clang builds everything (it is needed for the BPF objects and the libFuzzer targets
  # anyway); a build directory made with another compiler is started afresh.
  if [ -f "$PNS_BUILD/CMakeCache.txt" ] &&
      ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' "$PNS_BUILD/CMakeCache.txt"; then
    rm -rf "$PNS_BUILD"
  fi
  cmake -S "$PNS_ROOT" -B "$PNS_BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON -DPNS_WERROR=ON >/dev/null
  cmake --build "$PNS_BUILD" -j "$(nproc)"
}

# Debian 12's other compiler, GCC 12, in a Release build (what a packager makes), warnings as
# errors, so that neither compiler's build can rot; only the unit tests run with it.
pns_build_gcc() {
  local dir=${PNS_BUILD_GCC:-$PNS_ROOT/build-gcc}
  cmake -S "$PNS_ROOT" -B "$dir" -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON -DPNS_WERROR=ON >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target pnsd pnsctl pns_unit_tests
  (cd "$dir" && ctest --output-on-failure -L unit)
}

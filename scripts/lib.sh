# SPDX-License-Identifier: GPL-2.0
# Shared settings for the project's scripts: where the caches live and
# which tools the kernel build uses.  Sourced, never run.

# Everything we build or install outside the repo lives here.
BCH_CACHE="${BCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bcachefs-rs}"
BCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The kernel's Rust must be Debian's rustc-web (sysroot /usr); the rustup
# toolchain first on PATH is for host crates only.
KRUSTC=/usr/bin/rustc
KBINDGEN="${KBINDGEN:-$(command -v bindgen || echo "$HOME/.cargo/bin/bindgen")}"

LINUX_TARBALL=/usr/src/linux-source-6.12.tar.xz
VNG_VENV="$BCH_CACHE/venv"
VNG_VERSION=1.42
BINDGEN_VERSION=0.71.1

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# SPDX-License-Identifier: GPL-2.0
#
#   make            build bcachefs_rs.ko against KDIR (default: the cached
#                   test kernel from scripts/kernel, built on first use)
#   make check      host tests and clippy (cargo)
#   make test       everything: host tests, kernel, module, kselftests in a VM
#   make demo       the main job: boot the VM, format, mount, use, show sysfs
#   make bench      benchmarks in one VM boot (not part of the tests)
#   make bench-write  our format --source against C's cp -a, one VM boot
#   make loom       model-check src/sync with loom (own target directory)
#   make sync-stress  the 10 s host stress test of six locks
#   make test-long  the long host tests in release mode: the crash sweep
#                   (BCH_CRASH_OPS, BCH_CRASH_SEEDS, BCH_CRASH_RANDOM_CUTS,
#                   BCH_CRASH_MIB size it), 5,000 write-path corruptions
#                   (BCH_WRITE_FUZZ_SEEDS), the triggers' many commits,
#                   sync-stress
#   make clean

KDIR ?= $(shell scripts/kernel >/dev/null && scripts/kernel --path)
KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 RUSTC=/usr/bin/rustc \
	BINDGEN=$(shell command -v bindgen || echo $(HOME)/.cargo/bin/bindgen)

.PHONY: all modules check test bench bench-write demo clean tool loom sync-stress test-long test-long-vm

all: modules

modules:
	$(KMAKE) modules

tool:
	cargo build --release -p bcachefs-tools-rs

check:
	cargo test --workspace
	cargo clippy --workspace --all-targets -- -D warnings

test:
	scripts/test

demo:
	scripts/demo

bench: modules tool
	scripts/bench

bench-write: tool
	scripts/bench-write

# Optimised (loom is slow) but with debug assertions on.
loom:
	RUSTFLAGS="--cfg loom" CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
	LOOM_MAX_PREEMPTIONS=$${LOOM_MAX_PREEMPTIONS:-5} \
	cargo test --release --lib -p bcachefs_rs --target-dir target/loom \
		sync::loom_tests -- --test-threads=1

sync-stress:
	cargo test --release --lib -p bcachefs_rs sync::stress -- --ignored --nocapture

test-long:
	cargo test --release -p bcachefs_rs --test crash_sweep -- --ignored --nocapture
	cargo test --release -p bcachefs_rs --test fs_rw_alloc -- --ignored --nocapture
	BCH_WRITE_FUZZ_SEEDS=$${BCH_WRITE_FUZZ_SEEDS:-5000} \
		cargo test --release -p bcachefs_rs --test write_fuzz -- --nocapture
	cargo test --release -p bcachefs_rs --test triggers_write -- --ignored --nocapture
	$(MAKE) sync-stress

# The read-write kselftests at the issue's sizes (100 mount cycles, 50
# power cuts): about 25 minutes under TCG.
test-long-vm: modules
	BCH_RW_CYCLES=100 BCH_RW_CUTS=50 scripts/selftests 51-rw-power-cut 53-rw-mount-cycles

clean:
	-$(KMAKE) clean
	rm -rf bindings

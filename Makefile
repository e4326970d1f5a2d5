# SPDX-License-Identifier: GPL-2.0
# HyperPS: the two commands a user needs are `make run` and `make test`. Both install what is
# missing (Debian packages, bindgen, the kernel source) and reuse the build cache in build/.

SCRIPTS := $(CURDIR)/scripts
BUILD := $(CURDIR)/build

.PHONY: all run test bench deps kernel module selftests initramfs check bench-log clean distclean help

all: module

help:
	@echo "make run        build everything, boot the VT-x bench, load HyperPS, run a real guest, report"
	@echo "make test       every check: userspace tests, style gates, builds, the bench tests"
	@echo "                (the without-HyperPS results are reused from ~/.cache/hyperps while the"
	@echo "                kernel, stock modules, selftests and bench scripts are unchanged)"
	@echo "make test FULL=1  the same, with the without-HyperPS pass run again"
	@echo "make test T=RE  only the bench tests whose names match the regex RE, with their setup,"
	@echo "                without and with HyperPS, in one boot (builds first; no userspace gates)"
	@echo "make bench      guest benchmarks without and with hyperps.ko; table, CSV/JSON, PNG"
	@echo "make deps       install the Debian packages and bindgen the build needs"
	@echo "make kernel     unpack linux-source-6.12, apply patches/, configure and build"
	@echo "make module     build hyperps/hyperps.ko against that kernel"
	@echo "make check      userspace tests and style gates only (needs the prepared kernel source)"
	@echo "make clean      remove build outputs but keep the kernel build cache"
	@echo "make distclean  remove build/ entirely"

run:
	@$(SCRIPTS)/run.sh

test:
	@HPS_TEST_FILTER='$(T)' HPS_TEST_FULL='$(FULL)' $(SCRIPTS)/test.sh

bench:
	@$(SCRIPTS)/perf.sh

deps:
	@$(SCRIPTS)/deps.sh

kernel: deps
	@$(SCRIPTS)/kernel.sh all

module: kernel
	@$(SCRIPTS)/module.sh build

selftests: kernel
	@$(SCRIPTS)/selftests.sh

check: deps
	@$(SCRIPTS)/kernel.sh prepare
	@mkdir -p $(BUILD)/logs && : > $(BUILD)/logs/check-results.tsv
	@$(SCRIPTS)/userspace-checks.sh $(BUILD)/logs/check-results.tsv
	@! grep -q '^fail' $(BUILD)/logs/check-results.tsv

clean:
	-@[ -f $(BUILD)/kobj/Makefile ] && $(MAKE) -s -C $(BUILD)/kobj M=$(CURDIR)/hyperps clean
	rm -rf $(BUILD)/bench $(BUILD)/perf $(BUILD)/initramfs $(BUILD)/selftests $(BUILD)/guest $(BUILD)/*.cpio.gz

distclean: clean
	rm -rf $(BUILD)

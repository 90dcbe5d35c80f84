# ublk-mirror: build, test, demo. Every target installs what it needs (Debian/Ubuntu, as root).
SHELL := /bin/bash
MVN ?= mvn -B -q
PREFIX ?= /usr/local
JAR := cli/target/mirrorctl.jar
MODEL_SEEDS ?= 2000

.PHONY: all deps build install test unit-test root-test demo bench bench-jmh bench-fio bench-net man clean native kmod-shim vm-setup vm-test vm-bench

all: build

# Tools the build, the tests and the demo use; installed only when missing.
deps:
	@scripts/deps.sh

build: deps $(JAR) bin/mirrorctl native kmod-shim

$(JAR): $(shell find pom.xml */pom.xml java-api/src cli/src -type f 2>/dev/null)
	$(MVN) -DskipTests install
	@touch $(JAR)

bin/mirrorctl: $(JAR) scripts/mirrorctl.in
	@mkdir -p bin
	@sed "s#@JAR@#$(CURDIR)/$(JAR)#" scripts/mirrorctl.in > $@
	@chmod +x $@
	@echo "built bin/mirrorctl"

native:
	@$(MAKE) -s -C native

kmod-shim:
	@$(MAKE) -s -C kmod-shim

install: build
	install -d $(DESTDIR)$(PREFIX)/lib/ublk-mirror $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)/etc/bash_completion.d
	install -m 0644 $(JAR) $(DESTDIR)$(PREFIX)/lib/ublk-mirror/mirrorctl.jar
	$(MAKE) -s -C native install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	sed "s#@JAR@#$(PREFIX)/lib/ublk-mirror/mirrorctl.jar#" scripts/mirrorctl.in > $(DESTDIR)$(PREFIX)/bin/mirrorctl
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/mirrorctl
	java -cp $(JAR) picocli.AutoComplete -n mirrorctl -o $(DESTDIR)/etc/bash_completion.d/mirrorctl --force org.ublkmirror.cli.Mirrorctl
	$(MAKE) -s man
	cp build/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	@echo "installed mirrorctl in $(DESTDIR)$(PREFIX)/bin"

man: $(JAR)
	@mkdir -p build/man build/tools
	@[ -f build/tools/picocli-codegen.jar ] || mvn -B -q dependency:copy -Dartifact=info.picocli:picocli-codegen:4.7.7 \
	  -DoutputDirectory=build/tools -Dmdep.stripVersion=true
	java -cp $(JAR):build/tools/picocli-codegen.jar picocli.codegen.docgen.manpage.ManPageGenerator \
	  -d build/man org.ublkmirror.cli.Mirrorctl
	@command -v asciidoctor >/dev/null || { echo "man: installing asciidoctor (AsciiDoc -> troff)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends asciidoctor >/dev/null; }
	asciidoctor -b manpage -D build/man build/man/*.adoc
	@ls build/man/*.1 >/dev/null && echo "man pages in build/man"

# Every test: unit and model tests (MODEL_SEEDS random histories), the root-level tests on this
# host (FUSE + loop, NBD interop), then the ublk smoke tests in a qemu guest (tests/vm).
test: deps native
	$(MVN) install -DskipTests
	scripts/restore-fusectl.sh mvn -B test -pl java-api,cli -am -Dmodel.seeds=$(MODEL_SEEDS)
	$(MAKE) root-test
	$(MAKE) vm-test

unit-test: native
	scripts/restore-fusectl.sh mvn -B test -pl java-api,cli -am -Dmodel.seeds=$(MODEL_SEEDS)

# Root-level tests on this host (FUSE + loop): need root, /dev/fuse, losetup, mkfs.ext4, fio; the
# network tests (MirrorNetLinkTest) make their own network namespaces: ip, tc, nft, nsenter.
root-test: deps
	@scripts/check-root-env.sh
	scripts/restore-fusectl.sh mvn -B test -pl tests -am -DskipRootTests=false -Dsurefire.failIfNoSpecifiedTests=false -Dtest='org.ublkmirror.it.**.*Test'

# Root-level tests in qemu (TCG) guests whose kernels have ublk_drv: see docs/vm-tests.md.
# The repository is shared into the guest at its own path (--rw): the guest's /tmp is its own
# tmpfs, and a clone may live under /tmp. Two guest kernels, each in its own cache:
#   VM_CACHE_ZC (default /var/cache/ublk-mirror-vm/trixie-backports): a 7.x kernel from
#     trixie-backports, with ublk zero copy (6.16+): the full suite runs on it;
#   VM_CACHE (default /var/cache/ublk-mirror-vm): Debian 12's 6.12 kernel (no zero copy): the
#     copying path and a mirror, a short second boot (--compat).
VM_CACHE ?= /var/cache/ublk-mirror-vm
VM_CACHE_ZC ?= $(VM_CACHE)/trixie-backports
VM_TIMEOUT ?= 600
# mirrorctl over ublk runs dozens of JVMs in the TCG guest: ublk-mirror-smoke 10-15 minutes and
# mirror.sh 15-25 minutes on a loaded 2-core host
VM_UBLK_TIMEOUT ?= 5400
VM_MEM ?= 2048
# The frontend tests/vm/mirror.sh drives in `make vm-test`: ublk (default), fuse, or none (not run).
VM_MIRROR ?= ublk
# The frontend of the mirror in `make vm-bench`.
VM_FRONTEND ?= ublk
VM_BENCH_OPTS ?= --runtime 10 --size 256M --warmup 30 --rounds 3 --ramp 5
# The kernel `make vm-bench` boots: zc (the 7.x one, default) or compat (6.12).
VM_BENCH_KERNEL ?= zc
VM_BENCH_CACHE = $(if $(filter compat,$(VM_BENCH_KERNEL)),$(VM_CACHE),$(VM_CACHE_ZC))

vm-setup:
	@t0=$$(date +%s); UBLK_VM_CACHE=$(VM_CACHE) tests/vm/setup.sh && \
	  UBLK_VM_CACHE=$(VM_CACHE_ZC) UBLK_VM_KERNEL_SOURCE=trixie-backports tests/vm/setup.sh; rc=$$?; \
	  echo "vm-setup: exit $$rc, $$(( $$(date +%s) - t0 ))s"; exit $$rc

build/vm/ublk-null: tests/vm/ublk-null.c | vm-setup
	@mkdir -p build/vm
	$(CC) -O2 -Wall -Wextra -o $@ $< -luring -lpthread

# Two guest boots (tests/vm/suite.sh). On the 7.x kernel: smoke.sh (harness + raw ublk),
# ublk-mirror-smoke.sh (the ublk frontend's own end-to-end test, in zero-copy mode),
# ublk-zero-copy.sh --require, then mirror.sh over $(VM_MIRROR) (the mirror suite: fio verify,
# ext4, outage + resync under load, bad input, kill -9 with and without user recovery). On 6.12:
# smoke.sh and ublk-zero-copy.sh (the copying path). Fails when any check of either fails.
vm-test: vm-setup build/vm/ublk-null $(JAR) bin/mirrorctl native
	@t0=$$(date +%s); UBLK_VM_CACHE=$(VM_CACHE_ZC) tests/vm/run.sh --mem $(VM_MEM) \
	  --timeout $(VM_UBLK_TIMEOUT) --rw $(CURDIR) -- tests/vm/suite.sh --mirror $(VM_MIRROR) --zero-copy require; \
	  rc=$$?; echo "vm-test: 7.x kernel: exit $$rc, $$(( $$(date +%s) - t0 ))s"; t1=$$(date +%s); \
	  UBLK_VM_CACHE=$(VM_CACHE) tests/vm/run.sh --mem $(VM_MEM) --timeout $(VM_UBLK_TIMEOUT) --rw $(CURDIR) \
	  -- tests/vm/suite.sh --compat; rc2=$$?; echo "vm-test: 6.12 kernel (--compat): exit $$rc2, $$(( $$(date +%s) - t1 ))s"; \
	  echo "vm-test: exit $$((rc | rc2)), $$(( $$(date +%s) - t0 ))s in the VM steps"; [ $$rc -eq 0 ] && [ $$rc2 -eq 0 ]

# Benchmarks in one guest (not part of make test): tests/vm/bench.sh; the table is appended to
# build/vm/bench.md (copy it into bench/RESULTS.md with the host's details).
vm-bench: vm-setup build/vm/ublk-null $(JAR) bin/mirrorctl native
	@mkdir -p build/vm; UBLK_VM_CACHE=$(VM_BENCH_CACHE) tests/vm/run.sh --mem 6144 --timeout 3600 \
	  --rw $(CURDIR) -- tests/vm/bench.sh --frontend $(VM_FRONTEND) --mdadm $(VM_BENCH_CACHE)/tools/sbin/mdadm \
	  --record $(CURDIR)/build/vm/bench.md $(VM_BENCH_OPTS)

demo: build
	@scripts/demo.sh

bench: bench-jmh bench-fio

bench-jmh: deps
	$(MVN) -DskipTests install
	java -jar bench/target/benchmarks.jar -f 1 -wi 2 -i 3 -w 2s -r 3s

bench-fio: build
	@bench/fio-compare.sh

# Resync over a veth link between two network namespaces vs the link's own throughput (root).
bench-net: build
	@bench/net-resync.sh --rate 200mbit

clean:
	mvn -B -q clean || true
	rm -rf bin build
	$(MAKE) -s -C native clean

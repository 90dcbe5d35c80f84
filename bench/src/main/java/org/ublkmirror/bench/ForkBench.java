package org.ublkmirror.bench;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * Fork with tags and group commit vs the same forking without tags, in one run: 4 KiB random
 * writes from 16 threads (queue depth 16) into a mirror of two files (page cache, so the journal's
 * cost is as visible as it can be). Target: tagged at most 10% slower. "degraded": the secondary
 * detached, every write tracked (tag retirement then waits for the tracking log's persistence).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class ForkBench {
    @Param({"tagged", "untagged", "degraded"})
    public String mode;

    Path dir;
    Mirror mirror;
    long blocks;

    @Setup(Level.Trial)
    public void setup() throws IOException {
        dir = Files.createTempDirectory(Path.of(System.getProperty("bench.dir", "/var/tmp")), "forkbench");
        MirrorConfig cfg = new MirrorConfig("bench", dir.resolve("p"), dir.resolve("s"), null, 1, 60_000);
        Mirror.create(cfg, 256L << 20, 4096, false, null);
        mirror = Mirror.open(cfg, new Mirror.Options());
        if (mode.equals("untagged")) mirror.forker().disableTaggingForBenchmark();
        if (mode.equals("degraded")) mirror.detach(); // every write becomes a tracking command
        blocks = mirror.sizeBytes() / 4096;
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        long blocks = mirror.forker().journalBlocks(), recs = mirror.forker().journalRecords();
        System.out.printf("%n[%s] writes %d, journal blocks %d (both legs), records %d: %.1f records per journal block%n",
                mode, mirror.forker().writes(), blocks, recs, blocks == 0 ? 0.0 : (double) recs / blocks);
        mirror.close();
        try (var s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    @State(Scope.Thread)
    public static class Buf {
        final ByteBuffer b = ByteBuffer.allocateDirect(4096);
    }

    @Benchmark
    @Threads(16)
    public void randwrite4k(Buf buf) throws IOException {
        long blk = ThreadLocalRandom.current().nextLong(blocks);
        buf.b.clear();
        buf.b.putLong(0, blk);
        mirror.write(blk * 4096, buf.b, false);
    }
}

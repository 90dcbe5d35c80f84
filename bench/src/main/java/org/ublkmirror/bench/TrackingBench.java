package org.ublkmirror.bench;

import java.util.List;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.ublkmirror.track.LogStore;
import org.ublkmirror.track.TrackStatus;
import org.ublkmirror.track.Tracker;
import org.ublkmirror.track.TrackingCommand;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;

/**
 * Tracking cost: marks per second into a 1 TiB volume (2^28 blocks of 4 KiB) at random
 * addresses, through the bare log and through {@link Tracker#track} (one and two threads), and
 * the time to encode a sparse log (0.1% of the volume dirty), which is how long a persist
 * holds the log's lock. Memory per dirty block is measured by {@link TrackingMemory}.
 *
 * <p>Run: {@code java -jar bench/target/benchmarks.jar TrackingBench -f 1 -wi 2 -i 3 -w 2s -r 2s}
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class TrackingBench {
    static final long BLOCKS = 1L << 28; // 1 TiB of 4 KiB blocks
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");
    static final int MASK = (1 << 20) - 1;

    static long[] randomBlocks(long seed) {
        long[] a = new long[MASK + 1];
        Random r = new Random(seed);
        for (int i = 0; i < a.length; i++) {
            a[i] = (r.nextLong() >>> 1) % BLOCKS;
        }
        return a;
    }

    /** A fresh log per trial; the dirty set grows during the run (about 1-5% of the volume). */
    @State(Scope.Benchmark)
    public static class LogState {
        TrackingLog log;
        Tracker tracker;
        long[] blocks;
        final AtomicLong tag = new AtomicLong();

        @Setup(Level.Trial)
        public void setup() {
            log = new TrackingLog(VOL, 0, 4096, BLOCKS, 60_000);
            tracker = new Tracker(log, List.of(new NullStore()));
            blocks = randomBlocks(42);
        }
    }

    @State(Scope.Thread)
    public static class Cursor {
        int i;
        long[] blocks;

        @Setup(Level.Trial)
        public void setup() {
            blocks = randomBlocks(Thread.currentThread().getId());
        }
    }

    /** Bare TrackingLog.mark of one random 4 KiB block (synchronized, no I/O). */
    @Benchmark
    public void markRandom(LogState s, Cursor c) {
        s.log.mark(c.blocks[c.i++ & MASK], 1, System.currentTimeMillis());
    }

    /** Tracker.track of one random block: what the engine pays per write while degraded. */
    @Benchmark
    public TrackStatus trackRandom(LogState s, Cursor c) {
        return s.tracker.track(new TrackingCommand(s.tag.incrementAndGet(), 0, c.blocks[c.i++ & MASK], 1,
                System.currentTimeMillis()));
    }

    /** Same, from two threads at once (the machine has 2 cores). */
    @Benchmark
    @Threads(2)
    public TrackStatus trackRandom2Threads(LogState s, Cursor c) {
        return s.tracker.track(new TrackingCommand(s.tag.incrementAndGet(), 0, c.blocks[c.i++ & MASK], 1,
                System.currentTimeMillis()));
    }

    /** A sparse log: 0.1% of the 1 TiB volume dirty at random, in one epoch. */
    @State(Scope.Benchmark)
    public static class SparseState {
        TrackingLog log;

        @Setup(Level.Trial)
        public void setup() {
            log = TrackingMemory.sparse(BLOCKS / 1000, 1, 7);
        }
    }

    /** Encoding the sparse log (268k dirty blocks): the lock hold time of a persist. */
    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public byte[] encodeSparse(SparseState s) {
        return TrackingLogFormat.encode(s.log, 1);
    }

    static final class NullStore implements LogStore {
        @Override
        public void write(byte[] record) {
        }

        @Override
        public byte[] readLatest() {
            return null;
        }

        @Override
        public String describe() {
            return "null";
        }
    }
}

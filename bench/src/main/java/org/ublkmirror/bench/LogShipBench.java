package org.ublkmirror.bench;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

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
import org.ublkmirror.logship.LogReceiver;
import org.ublkmirror.logship.ReceiverClient;
import org.ublkmirror.logship.ReceiverStore;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;

/**
 * Cost of shipping a whole tracking log of 1 M dirty blocks to a log receiver on loopback, as
 * the mirror does at every persist while the log changes (no incremental shipping): encode
 * alone, decode alone (the receiver's check), and encode + PUT (frame, CRC, TCP, the receiver's decode, temp file, fsync, rename,
 * fsync of the directory). Sparse: 1 M random blocks of a 1 TiB volume (0.4 %); dense: 1 M
 * consecutive blocks (4 GiB written in one run). Each op ships a new sequence number.
 *
 * <p>Run: {@code java -jar bench/target/benchmarks.jar LogShipBench -f 1 -wi 2 -i 5 -w 2s -r 3s}
 * (the receiver's directory is under java.io.tmpdir; set -Djava.io.tmpdir to put it on a disk).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class LogShipBench {
    static final long BLOCKS = 1L << 28; // 1 TiB of 4 KiB blocks
    static final int DIRTY = 1 << 20;
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");

    @State(Scope.Benchmark)
    public static class Shipping {
        @Param({"sparse", "dense"})
        public String pattern;

        TrackingLog log;
        Path dir;
        LogReceiver receiver;
        ReceiverClient client;
        long seq;
        byte[] record;

        @Setup(Level.Trial)
        public void setup() throws IOException {
            log = new TrackingLog(VOL, 0, 4096, BLOCKS, 60_000);
            if (pattern.equals("dense")) {
                log.mark(1L << 20, DIRTY, 1_000);
            } else {
                Random r = new Random(42);
                while (log.dirtyCount() < DIRTY) log.mark((r.nextLong() >>> 1) % BLOCKS, 1, 1_000);
            }
            byte[] rec = TrackingLogFormat.encode(log, 1);
            record = rec;
            System.out.printf("%n%s: %d dirty blocks, record %d bytes (%.3f B per dirty block)%n", pattern, log.dirtyCount(),
                    rec.length, rec.length / (double) log.dirtyCount());
            dir = Files.createTempDirectory("logship-bench");
            receiver = LogReceiver.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), ReceiverStore.open(dir), null);
            client = new ReceiverClient("127.0.0.1", receiver.port(), ReceiverClient.Options.defaults());
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            client.close();
            receiver.close();
            try (Stream<Path> s = Files.walk(dir)) {
                for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
            }
        }
    }

    @Benchmark
    public byte[] encode(Shipping s) {
        return TrackingLogFormat.encode(s.log, ++s.seq);
    }

    /** What the receiver spends checking a record before it keeps it (and a mirror loading it back). */
    @Benchmark
    public TrackingLog decode(Shipping s) throws IOException {
        return TrackingLogFormat.decode(s.record);
    }

    @Benchmark
    public long encodeAndShip(Shipping s) throws IOException {
        return s.client.put("bench", TrackingLogFormat.encode(s.log, ++s.seq));
    }
}

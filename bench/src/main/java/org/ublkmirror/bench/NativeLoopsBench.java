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
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.StoreBlockIO;
import org.ublkmirror.resync.Extent;
import org.ublkmirror.resync.Extents;
import org.ublkmirror.sys.LibC;
import org.ublkmirror.sys.NativeLoops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Issue #4 part 1: do native loops beat Java for the resync? Side by side in one run:
 * <ul>
 * <li>{@link Copy}: one op copies 64 extents of 1 MiB (every other MiB of a 128 MiB span)
 *     between two 256 MiB files in /var/tmp, ascending like a resync, one thread: the current
 *     Java path (StoreBlockIO over FileStore: FileChannel read into a direct buffer, write out),
 *     the shim's copy_file_range, and the shim's pread/pwrite loop. {@code cache=warm}: the
 *     source is in the page cache; {@code cold}: before each op both files are fdatasync'ed and
 *     dropped with POSIX_FADV_DONTNEED (untimed), so the source is read from the disk.</li>
 * <li>{@link Scan}: Roaring64NavigableMap to the sorted coalesced extent list (256-block cap):
 *     Extents.of (Java, block by block) against the shim's container scan (including the
 *     portable serialization it needs and building the Extent list), and the serialization
 *     alone. Shapes over 64M blocks (256 GiB at 4 KiB): {@code sparse} 1M random blocks,
 *     {@code clustered} 16M blocks in 64-block clusters, {@code full} all 64M blocks.</li>
 * </ul>
 * Needs native/out/libublkmirror.so (make -C native). Lower is better.
 */
public class NativeLoopsBench {
    static final int BS = 4096;
    static final int EXTENT = 1 << 20;
    static final int EXTENTS = 64;

    @State(Scope.Benchmark)
    public static class Copy {
        @Param({"warm", "cold"})
        public String cache;

        Path dir;
        FileStore ps, ss;
        BlockIO primary, secondary;
        int fdIn, fdOut;
        NativeLoops nl;
        ByteBuffer buf = ByteBuffer.allocateDirect(EXTENT);

        @Setup(Level.Trial)
        public void setup() throws IOException {
            nl = NativeLoops.load();
            if (nl == null) throw new IllegalStateException("build native/out/libublkmirror.so first (make -C native)");
            dir = Files.createTempDirectory(Path.of("/var/tmp"), "native-loops-bench");
            long size = 256L << 20;
            byte[] chunk = new byte[EXTENT];
            Random rnd = new Random(3);
            try (FileChannel a = FileChannel.open(dir.resolve("primary.img"), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                 FileChannel b = FileChannel.open(dir.resolve("secondary.img"), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                for (long p = 0; p < size; p += EXTENT) {
                    rnd.nextBytes(chunk);
                    a.write(ByteBuffer.wrap(chunk), p);
                    b.write(ByteBuffer.wrap(new byte[EXTENT]), p); // allocated, like a real leg
                }
                a.force(true);
                b.force(true);
            }
            ps = FileStore.open(dir.resolve("primary.img"));
            ss = FileStore.open(dir.resolve("secondary.img"));
            primary = new StoreBlockIO(ps, 0, BS, size / BS);
            secondary = new StoreBlockIO(ss, 0, BS, size / BS);
            fdIn = LibC.get().open(dir.resolve("primary.img").toString(), LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
            fdOut = LibC.get().open(dir.resolve("secondary.img").toString(), LibC.O_RDWR | LibC.O_CLOEXEC, 0);
        }

        @Setup(Level.Invocation)
        public void drop() throws IOException {
            if (cache.equals("cold")) {
                ss.flush();
                nl.fadvise(fdIn, 0, 0, NativeLoops.POSIX_FADV_DONTNEED);
                nl.fadvise(fdOut, 0, 0, NativeLoops.POSIX_FADV_DONTNEED);
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            // the two copies must have left identical bytes in the copied ranges
            ByteBuffer x = ByteBuffer.allocateDirect(EXTENT), y = ByteBuffer.allocateDirect(EXTENT);
            for (int i = 0; i < EXTENTS; i++) {
                x.clear();
                y.clear();
                ps.read(2L * i * EXTENT, x);
                ss.read(2L * i * EXTENT, y);
                if (!x.flip().equals(y.flip())) throw new IllegalStateException("extent " + i + " differs after the copy");
            }
            LibC.get().close(fdIn);
            LibC.get().close(fdOut);
            ps.close();
            ss.close();
            Files.deleteIfExists(dir.resolve("primary.img"));
            Files.deleteIfExists(dir.resolve("secondary.img"));
            Files.deleteIfExists(dir);
        }
    }

    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public void copyJava(Copy s) throws IOException {
        for (int i = 0; i < EXTENTS; i++) {
            long block = 2L * i * (EXTENT / BS);
            s.buf.clear();
            s.primary.read(block, s.buf);
            s.buf.flip();
            s.secondary.write(block, s.buf, false);
        }
    }

    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public void copyNativeCfr(Copy s) throws IOException {
        for (int i = 0; i < EXTENTS; i++) {
            long off = 2L * i * EXTENT;
            s.nl.copy(s.fdIn, off, s.fdOut, off, EXTENT, s.buf, 0, "bench");
        }
    }

    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public void copyNativeRw(Copy s) throws IOException {
        for (int i = 0; i < EXTENTS; i++) {
            long off = 2L * i * EXTENT;
            s.nl.copy(s.fdIn, off, s.fdOut, off, EXTENT, s.buf, NativeLoops.COPY_NO_CFR, "bench");
        }
    }

    @State(Scope.Benchmark)
    public static class Scan {
        @Param({"sparse", "clustered", "full"})
        public String shape;

        Roaring64NavigableMap dirty;
        NativeLoops nl;

        @Setup(Level.Trial)
        public void setup() {
            nl = NativeLoops.load();
            if (nl == null) throw new IllegalStateException("build native/out/libublkmirror.so first (make -C native)");
            long blocks = 64L << 20;
            Random rnd = new Random(11);
            dirty = new Roaring64NavigableMap();
            switch (shape) {
                case "sparse" -> {
                    while (dirty.getLongCardinality() < 1 << 20) dirty.addLong((long) (rnd.nextDouble() * blocks));
                }
                case "clustered" -> {
                    long clusters = blocks / 64;
                    while (dirty.getLongCardinality() < blocks / 4) {
                        long c = (long) (rnd.nextDouble() * clusters);
                        dirty.addRange(c * 64, c * 64 + 64);
                    }
                }
                case "full" -> dirty.addRange(0, blocks);
                default -> throw new IllegalArgumentException(shape);
            }
            dirty.runOptimize(); // as TrackingLog does to its epochs
            List<Extent> a = Extents.of(dirty), b = nl.extents(dirty, Extents.DEFAULT_MAX_BLOCKS);
            if (!a.equals(b)) throw new IllegalStateException("native scan differs from Extents.of");
        }
    }

    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public List<Extent> scanJava(Scan s) {
        return Extents.of(s.dirty);
    }

    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public List<Extent> scanNative(Scan s) {
        return s.nl.extents(s.dirty, Extents.DEFAULT_MAX_BLOCKS);
    }

    @Benchmark
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public ByteBuffer scanNativeSerializeOnly(Scan s) {
        return NativeLoops.serializePortable(s.dirty);
    }
}

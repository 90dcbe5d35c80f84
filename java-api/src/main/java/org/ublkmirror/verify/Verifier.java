package org.ublkmirror.verify;

import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.resync.Extent;
import org.ublkmirror.resync.RateLimiter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Compares two legs: a checksum per region first, then, only for regions whose checksums
 * differ, the exact blocks, naming every differing range.
 *
 * <p>Online verify: with a {@link RangeLock} shared with the application's write path, each
 * region is locked while both sides are checksummed and compared, so a write that reached one
 * leg but not yet the other (it holds the lock until both answered) is never seen half-done and
 * cannot cause a false difference.
 */
public final class Verifier {

    /**
     * @param regionBytes size of one checksummed region, a multiple of the block size (default 1 MiB)
     * @param limiter     caps the bytes read per second (both legs together), or null
     * @param lock        the mirror's range lock for online verify, or null when offline
     * @param progress    called after each region, or null
     * @param checksumA   checksums of leg a (null: read and hash locally); a remote leg computes them server-side
     * @param checksumB   the same for leg b
     */
    public record Options(long regionBytes, RateLimiter limiter, RangeLock lock, Consumer<VerifyProgress> progress,
                          RegionChecksum checksumA, RegionChecksum checksumB) {
        public static final long DEFAULT_REGION_BYTES = 1 << 20;
        public static final Options DEFAULT = new Options(DEFAULT_REGION_BYTES, null, null, null, null, null);

        public Options {
            if (regionBytes <= 0) {
                throw new IllegalArgumentException("region size must be > 0 bytes, got " + regionBytes);
            }
        }

        public Options withRegionBytes(long r) {
            return new Options(r, limiter, lock, progress, checksumA, checksumB);
        }

        public Options withLimiter(RateLimiter l) {
            return new Options(regionBytes, l, lock, progress, checksumA, checksumB);
        }

        public Options withLock(RangeLock l) {
            return new Options(regionBytes, limiter, l, progress, checksumA, checksumB);
        }

        public Options withProgress(Consumer<VerifyProgress> p) {
            return new Options(regionBytes, limiter, lock, p, checksumA, checksumB);
        }

        public Options withChecksums(RegionChecksum a, RegionChecksum b) {
            return new Options(regionBytes, limiter, lock, progress, a, b);
        }
    }

    private static final int EXACT_BUFFER_BYTES = 1 << 20;

    private Verifier() {
    }

    public static VerifyReport verify(BlockIO a, BlockIO b) throws IOException, InterruptedException {
        return verify(a, b, Options.DEFAULT);
    }

    public static VerifyReport verify(BlockIO a, BlockIO b, Options o) throws IOException, InterruptedException {
        int bs = a.blockSize();
        if (bs != b.blockSize() || a.blockCount() != b.blockCount()) {
            throw new IllegalArgumentException("cannot compare legs of different geometry: first has " + a.blockCount()
                    + " blocks of " + a.blockSize() + " bytes, second " + b.blockCount() + " blocks of " + b.blockSize()
                    + " bytes; check that both paths name the legs of the same mirror");
        }
        if (o.regionBytes() % bs != 0) {
            throw new IllegalArgumentException("region size " + o.regionBytes() + " is not a multiple of the block size "
                    + bs + "; pick a multiple, e.g. " + Math.max(bs, o.regionBytes() / bs * bs));
        }
        long regionBlocks = o.regionBytes() / bs;
        RegionChecksum ca = o.checksumA() != null ? o.checksumA() : RegionChecksum.over(a);
        RegionChecksum cb = o.checksumB() != null ? o.checksumB() : RegionChecksum.over(b);
        long ca0 = ca.bytesRead();
        long cb0 = cb.bytesRead();
        long n = a.blockCount();
        long regionsTotal = (n + regionBlocks - 1) / regionBlocks;
        int exactBlocks = (int) Math.max(1, Math.min(regionBlocks, EXACT_BUFFER_BYTES / bs));
        ByteBuffer ba = null;
        ByteBuffer bb = null;
        Coalescer diff = new Coalescer();
        long regions = 0;
        long mismatched = 0;
        long exactBytes = 0;
        long compared = 0;
        for (long start = 0; start < n; start += regionBlocks) {
            long count = Math.min(regionBlocks, n - start);
            if (o.limiter() != null) {
                o.limiter().acquire(2 * count * bs);
            }
            RangeLock.Held h = o.lock() != null ? o.lock().lock(start, count) : null;
            try {
                if (ca.checksum(start, count) != cb.checksum(start, count)) {
                    mismatched++;
                    if (ba == null) {
                        ba = ByteBuffer.allocateDirect(exactBlocks * bs);
                        bb = ByteBuffer.allocateDirect(exactBlocks * bs);
                    }
                    if (o.limiter() != null) {
                        o.limiter().acquire(2 * count * bs);
                    }
                    for (long s = start; s < start + count; s += exactBlocks) {
                        int k = (int) Math.min(exactBlocks, start + count - s);
                        ba.clear().limit(k * bs);
                        bb.clear().limit(k * bs);
                        a.read(s, ba);
                        b.read(s, bb);
                        exactBytes += 2L * k * bs;
                        for (int i = 0; i < k; i++) {
                            ba.limit((i + 1) * bs).position(i * bs);
                            bb.limit((i + 1) * bs).position(i * bs);
                            if (ba.mismatch(bb) >= 0) {
                                diff.add(s + i);
                            }
                        }
                    }
                }
            } finally {
                if (h != null) {
                    h.close();
                }
            }
            regions++;
            compared += count;
            if (o.progress() != null) {
                o.progress().accept(new VerifyProgress(regions, regionsTotal, compared, diff.blocks));
            }
        }
        long bytesRead = exactBytes + (ca.bytesRead() - ca0) + (cb.bytesRead() - cb0);
        return new VerifyReport(compared, regions, mismatched, diff.finish(), bytesRead);
    }

    /** Ascending block addresses into maximal runs. */
    private static final class Coalescer {
        final List<Extent> out = new ArrayList<>();
        long start = -1;
        long count;
        long blocks;

        void add(long block) {
            blocks++;
            if (count > 0 && block == start + count) {
                count++;
                return;
            }
            if (count > 0) {
                out.add(new Extent(start, count));
            }
            start = block;
            count = 1;
        }

        List<Extent> finish() {
            if (count > 0) {
                out.add(new Extent(start, count));
                count = 0;
            }
            return out;
        }
    }
}

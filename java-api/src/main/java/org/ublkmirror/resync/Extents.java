package org.ublkmirror.resync;

import org.roaringbitmap.longlong.ImmutableLongBitmapDataProvider;
import org.roaringbitmap.longlong.LongIterator;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.PrimitiveIterator;

/**
 * Turns a sorted set of block addresses (the tracking log's dirty bitmap) into the sorted,
 * coalesced block-address list that resync copies.
 */
public final class Extents {
    /** 256 blocks: 1 MiB at 4 KiB, the size of one resync copy. */
    public static final long DEFAULT_MAX_BLOCKS = 256;

    private Extents() {
    }

    /**
     * Coalesces strictly increasing block addresses (duplicates are tolerated and ignored) into
     * extents of at most {@code maxBlocksPerExtent} blocks each. Throws on a decreasing address:
     * the input must be sorted.
     */
    public static List<Extent> coalesce(PrimitiveIterator.OfLong blocks, long maxBlocksPerExtent) {
        if (maxBlocksPerExtent <= 0) {
            throw new IllegalArgumentException("maxBlocksPerExtent must be > 0, got " + maxBlocksPerExtent);
        }
        List<Extent> out = new ArrayList<>();
        long start = -1;
        long count = 0;
        long prev = -1;
        while (blocks.hasNext()) {
            long b = blocks.nextLong();
            if (b < 0) {
                throw new IllegalArgumentException("block address " + b + " is negative");
            }
            if (count > 0 && b == prev) {
                continue; // duplicate
            }
            if (count > 0 && b < prev) {
                throw new IllegalArgumentException("block addresses are not sorted: " + b + " after " + prev);
            }
            if (count > 0 && b == prev + 1 && count < maxBlocksPerExtent) {
                count++;
            } else {
                if (count > 0) {
                    out.add(new Extent(start, count));
                }
                start = b;
                count = 1;
            }
            prev = b;
        }
        if (count > 0) {
            out.add(new Extent(start, count));
        }
        return out;
    }

    public static List<Extent> coalesce(LongIterator blocks, long maxBlocksPerExtent) {
        return coalesce(adapt(blocks), maxBlocksPerExtent);
    }

    /** From a Roaring64Bitmap or Roaring64NavigableMap (both iterate in ascending order for block addresses >= 0). */
    public static List<Extent> of(ImmutableLongBitmapDataProvider dirty, long maxBlocksPerExtent) {
        return coalesce(dirty.getLongIterator(), maxBlocksPerExtent);
    }

    public static List<Extent> of(ImmutableLongBitmapDataProvider dirty) {
        return of(dirty, DEFAULT_MAX_BLOCKS);
    }

    /** Sum of the extents' block counts. */
    public static long totalBlocks(List<Extent> extents) {
        long n = 0;
        for (Extent e : extents) {
            n += e.count();
        }
        return n;
    }

    /** Checks that extents are sorted and disjoint (what Resync and its deadlock-freedom need). */
    public static void checkSortedDisjoint(List<Extent> extents) {
        long end = -1;
        for (Extent e : extents) {
            if (e.start() < end) {
                throw new IllegalArgumentException("extents are not sorted and disjoint: " + e + " starts before block " + end);
            }
            end = e.end();
        }
    }

    public static List<Extent> unmodifiable(List<Extent> extents) {
        return Collections.unmodifiableList(new ArrayList<>(extents));
    }

    static PrimitiveIterator.OfLong adapt(LongIterator it) {
        return new PrimitiveIterator.OfLong() {
            @Override
            public boolean hasNext() {
                return it.hasNext();
            }

            @Override
            public long nextLong() {
                return it.next();
            }
        };
    }
}

package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.track.DirectoryLogStore;
import org.ublkmirror.track.Tracker;
import org.ublkmirror.track.TrackingLog;

import java.nio.file.Path;
import java.util.List;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A resync's clears wait for the secondary's flush (docs/resync.md, the flush-before-checkpoint
 * rule): copied blocks stay dirty until a barrier seals them and its checkpoint applies them, and a
 * block tracked after its copy stays dirty whatever the older copy says.
 */
class PendingClearsTest {

    @TempDir
    Path dir;

    @Test
    void copiesLeaveTheLogOnlyAtTheirCheckpointAndALaterTrackWins() {
        Tracking tr = new Tracking(new Tracker(new TrackingLog(UUID.randomUUID(), 4096, 1000),
                List.of(new DirectoryLogStore(dir, "t.trackinglog"))), () -> 1L);
        assertTrue(tr.track(7, 0, 0, 100));
        Tracking.PendingClears p = tr.watchResync();
        p.add(0, 10);
        p.add(10, 10);
        assertEquals(100, tr.dirtyCount(), "a copy is not clean before a flush covers it");
        p.seal(); // a flush is issued: it covers 0..19
        p.add(20, 10); // completed after the barrier: not covered
        assertTrue(tr.track(8, 0, 5, 1)); // block 5 written again, the secondary failed it: tracked
        assertEquals(29, p.pendingBlocks());
        assertEquals(19, p.apply(), "the flush covered 0..19 except the re-tracked block 5");
        Roaring64NavigableMap d = tr.log().dirty();
        assertEquals(81, tr.dirtyCount());
        assertTrue(d.contains(5), "a block tracked after its copy stays dirty");
        for (long b = 0; b < 20; b++) if (b != 5) assertFalse(d.contains(b), "block " + b);
        for (long b = 20; b < 100; b++) assertTrue(d.contains(b), "block " + b);

        // a failed flush: its sealed blocks stay pending and the next barrier's flush covers them
        p.seal(); // 20..29 sealed; pretend this flush failed (no apply)
        p.add(30, 5);
        Roaring64NavigableMap mark = new Roaring64NavigableMap();
        mark.addLong(25);
        tr.markAll(mark); // an outage marks block 25 (superset): it must stay dirty
        p.seal();
        assertEquals(14, p.apply());
        d = tr.log().dirty();
        assertEquals(67, tr.dirtyCount());
        assertTrue(d.contains(25) && d.contains(35) && !d.contains(20) && !d.contains(34));

        // the resync ended without a checkpoint for these: they are dropped, still dirty
        p.add(40, 5);
        tr.unwatch(p);
        assertEquals(67, tr.dirtyCount());
        assertTrue(tr.track(9, 0, 40, 1));
        assertEquals(5, p.pendingBlocks(), "after unwatch, tracking no longer touches the old resync's set");
    }
}

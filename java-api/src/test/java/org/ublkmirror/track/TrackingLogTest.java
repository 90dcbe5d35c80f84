package org.ublkmirror.track;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.UUID;

import org.junit.jupiter.api.Test;

class TrackingLogTest {
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");
    static final long MIN = 60_000;
    static final long T0 = 1_700_000_000_000L; // a fixed wall-clock time

    static TrackingLog log(long blocks) {
        return new TrackingLog(VOL, 0, 4096, blocks, MIN);
    }

    @Test
    void epochsOpenByTimeAndByRoll() {
        TrackingLog l = log(1 << 20);
        l.mark(0, 4, T0);
        l.mark(10, 1, T0 + 59_999);          // same epoch
        l.mark(20, 1, T0 + 60_000);          // a minute after its start: new epoch
        l.rollEpoch();
        l.mark(30, 1, T0 + 60_001);          // rolled: new epoch
        List<TrackingLog.EpochInfo> e = l.epochs();
        assertEquals(3, e.size());
        assertEquals(new TrackingLog.EpochInfo(1, T0, T0 + 59_999, 5), e.get(0));
        assertEquals(new TrackingLog.EpochInfo(2, T0 + 60_000, T0 + 60_000, 1), e.get(1));
        assertEquals(new TrackingLog.EpochInfo(3, T0 + 60_001, T0 + 60_001, 1), e.get(2));
        assertEquals(7, l.dirtyCount());
    }

    @Test
    void queryByTimeWindowAcrossEpochs() {
        TrackingLog l = log(1 << 20);
        l.mark(100, 10, T0);                  // epoch 1: [T0, T0+30s]
        l.mark(200, 5, T0 + 30_000);
        l.mark(105, 10, T0 + 2 * MIN);        // epoch 2: overlaps 105..109 with epoch 1
        l.mark(500, 1, T0 + 10 * MIN);        // epoch 3
        // window inside epoch 2 only
        assertEquals(List.of(new DirtyRange(105, 10, T0 + 2 * MIN, T0 + 2 * MIN)),
                l.query(T0 + 2 * MIN - 1, T0 + 3 * MIN));
        // window inside epoch 1 (between its start and end)
        assertEquals(List.of(new DirtyRange(100, 10, T0, T0 + 30_000), new DirtyRange(200, 5, T0, T0 + 30_000)),
                l.query(T0 + 10_000, T0 + 20_000));
        // everything: overlapping blocks get the union of the times, adjacent blocks with other times stay separate
        assertEquals(List.of(
                new DirtyRange(100, 5, T0, T0 + 30_000),
                new DirtyRange(105, 5, T0, T0 + 2 * MIN),
                new DirtyRange(110, 5, T0 + 2 * MIN, T0 + 2 * MIN),
                new DirtyRange(200, 5, T0, T0 + 30_000),
                new DirtyRange(500, 1, T0 + 10 * MIN, T0 + 10 * MIN)), l.query(Long.MIN_VALUE, Long.MAX_VALUE));
        // nothing in a window between epochs
        assertEquals(List.of(), l.query(T0 + 5 * MIN, T0 + 6 * MIN));
        // dirtyRanges merges by adjacency only
        assertEquals(List.of(new DirtyRange(100, 15, T0, T0 + 2 * MIN), new DirtyRange(200, 5, T0, T0 + 30_000),
                new DirtyRange(500, 1, T0 + 10 * MIN, T0 + 10 * MIN)), l.dirtyRanges());
    }

    @Test
    void clearRemovesFromEveryEpochAndDropsEmptyOnes() {
        TrackingLog l = log(1 << 20);
        l.mark(0, 100, T0);
        l.mark(50, 100, T0 + MIN);
        l.mark(1000, 1, T0 + 2 * MIN);
        l.clear(0, 150);
        assertEquals(1, l.epochs().size());
        assertEquals(3, l.epochs().get(0).id());
        assertEquals(1, l.dirtyCount());
        assertFalse(l.isDirty(60));
        assertTrue(l.isDirty(1000));
        l.clear(1000, 1);
        assertTrue(l.isEmpty());
        assertEquals(0, l.dirtyCount());
    }

    @Test
    void clearThroughSparesNewerEpochs() {
        TrackingLog l = log(1 << 20);
        l.mark(0, 10, T0);
        int upTo = l.rollEpoch();
        l.mark(5, 1, T0 + 1);                 // written during resync's copy
        l.clearThrough(0, 10, upTo);
        assertEquals(1, l.dirtyCount());
        assertTrue(l.isDirty(5));
    }

    @Test
    void addressesAbove4G() {
        long big = 1L << 40;
        TrackingLog l = log(big + 100);
        long a = (1L << 32) + 7;
        l.mark(a, 3, T0);
        l.mark(big + 90, 10, T0);
        l.mark((1L << 32) - 2, 4, T0);        // spans the 2^32 boundary
        assertTrue(l.isDirty(a + 2));
        assertTrue(l.isDirty(1L << 32));
        assertEquals(List.of(new DirtyRange((1L << 32) - 2, 4, T0, T0), new DirtyRange(a, 3, T0, T0),
                new DirtyRange(big + 90, 10, T0, T0)), l.query(T0, T0));
        assertEquals(17, l.dirtyCount());
    }

    @Test
    void marksOutsideTheVolumeAreRejected() {
        TrackingLog l = log(1000);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> l.mark(999, 2, T0));
        assertTrue(e.getMessage().contains("outside the volume"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> l.mark(-1, 1, T0));
        assertThrows(IllegalArgumentException.class, () -> l.mark(0, -1, T0));
        assertThrows(IllegalArgumentException.class, () -> l.mark(Long.MAX_VALUE, 1000, T0));
        assertTrue(l.isEmpty());
        l.mark(999, 1, T0);
        assertEquals(1, l.dirtyCount());
        l.growVolume(2000);
        l.mark(1500, 10, T0);
        assertEquals(11, l.dirtyCount());
    }

    @Test
    void dirtyIsANewUnionBitmap() {
        TrackingLog l = log(1 << 20);
        l.mark(1, 1, T0);
        l.mark(2, 1, T0 + MIN);
        var d = l.dirty();
        assertEquals(2, d.getLongCardinality());
        d.addLong(77);                          // a copy: the log is unchanged
        assertFalse(l.isDirty(77));
    }

    @Test
    void epochsBeyondTheBoundAreMergedKeepingEveryBlock() {
        TrackingLog l = log(1 << 20);
        l.setMaxEpochs(3);
        long[] minutes = {0, 1, 2, 10, 11, 30};
        for (int i = 0; i < minutes.length; i++) {
            l.mark(i * 10L, 1, T0 + minutes[i] * MIN);
        }
        List<TrackingLog.EpochInfo> e = l.epochs();
        assertEquals(3, e.size());
        // merged in order of smallest combined span: {0,1}, then {0-1,2}, then {10,11}
        assertEquals(new TrackingLog.EpochInfo(3, T0, T0 + 2 * MIN, 3), e.get(0));
        assertEquals(new TrackingLog.EpochInfo(5, T0 + 10 * MIN, T0 + 11 * MIN, 2), e.get(1));
        assertEquals(new TrackingLog.EpochInfo(6, T0 + 30 * MIN, T0 + 30 * MIN, 1), e.get(2));
        assertEquals(6, l.dirtyCount());
        assertEquals(List.of(new DirtyRange(30, 1, T0 + 10 * MIN, T0 + 11 * MIN), new DirtyRange(40, 1, T0 + 10 * MIN, T0 + 11 * MIN)),
                l.query(T0 + 10 * MIN, T0 + 10 * MIN));
        assertThrows(IllegalArgumentException.class, () -> l.setMaxEpochs(1));
    }
}

package org.ublkmirror.frontend.ublk;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** {@code UBLK_MIRROR_FIXED_WRITES}: which writes go to the legs from the request's buffer; {@code UBLK_MIRROR_BATCH_WRITES}: whether a batch's are started together. */
class FixedWritesMinTest {

    @Test
    void defaultOnOffAndSizes() {
        assertEquals(64 << 10, UblkDevice.fixedWritesMin(null), "unset: from 64 KiB (measured crossover)");
        assertEquals(64 << 10, UblkDevice.fixedWritesMin("on"));
        assertEquals(-1, UblkDevice.fixedWritesMin("off"));
        assertEquals(0, UblkDevice.fixedWritesMin("0"), "every write");
        assertEquals(4096, UblkDevice.fixedWritesMin("4k"));
        assertEquals(4096, UblkDevice.fixedWritesMin("4K"));
        assertEquals(1 << 20, UblkDevice.fixedWritesMin("1m"));
        assertEquals(131072, UblkDevice.fixedWritesMin("131072"));
    }

    @Test
    void aBadValueIsOneClearLine() {
        for (String v : new String[] {"yes", "-4k", "12q", "k", "99999999999"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> UblkDevice.fixedWritesMin(v));
            assertEquals("UBLK_MIRROR_FIXED_WRITES=" + v + " is not understood; use on, off, or the smallest write to send"
                    + " from the request's buffer (e.g. 64k, 0 for all)", e.getMessage());
        }
    }

    @Test
    void batchWritesIsOnOrOffAndAnythingElseIsOneClearLine() {
        assertTrue(UblkDevice.batchWrites(null), "unset: on");
        assertTrue(UblkDevice.batchWrites("on"));
        assertFalse(UblkDevice.batchWrites("off"));
        for (String v : new String[] {"of", "yes", "0", "OFF"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> UblkDevice.batchWrites(v));
            assertEquals("UBLK_MIRROR_BATCH_WRITES=" + v + " is not understood; use on or off", e.getMessage());
        }
    }

    @Test
    void directReadsModeNamesEachWayAndAnythingElseIsOneClearLine() {
        assertEquals(1, UblkDevice.directReadsMode(null), "unset: the shim decides (inline on a memory file system)");
        assertEquals(1, UblkDevice.directReadsMode("on"));
        assertEquals(-1, UblkDevice.directReadsMode("off"));
        assertEquals(0, UblkDevice.directReadsMode("uring"));
        assertEquals(2, UblkDevice.directReadsMode("inline"));
        assertEquals(1 | UblkQueue.READ_NO_MAP, UblkDevice.directReadsMode("pread"));
        for (String v : new String[] {"mmap", "yes", "0", "OFF"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> UblkDevice.directReadsMode(v));
            assertEquals("UBLK_MIRROR_DIRECT_READS=" + v + " is not understood; use on, off, uring, inline or pread", e.getMessage());
        }
    }

    @Test
    void inlineWritesIsOnOrOffAndEveryDefaultIsTheTuningDefault() {
        assertTrue(UblkDevice.onOff("UBLK_MIRROR_INLINE_WRITES", null));
        assertFalse(UblkDevice.onOff("UBLK_MIRROR_INLINE_WRITES", "off"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> UblkDevice.onOff("UBLK_MIRROR_INLINE_WRITES", "false"));
        assertEquals("UBLK_MIRROR_INLINE_WRITES=false is not understood; use on or off", e.getMessage());
        // the defaults a device gets with nothing set are what each parser gives for an unset variable
        assertEquals(new UblkDevice.Tuning(UblkDevice.directReadsMode(null), UblkDevice.onOff("X", null),
                UblkDevice.fixedWritesMin(null), UblkDevice.batchWrites(null), UblkDevice.onOff("X", null)),
                UblkDevice.Tuning.DEFAULT);
    }
}

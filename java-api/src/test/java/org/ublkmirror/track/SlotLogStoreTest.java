package org.ublkmirror.track;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Random;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;

class SlotLogStoreTest {
    static final long OFF = 8192;
    static final long SLOT = 4096;

    static byte[] rec(String s, int pad) {
        byte[] b = new byte[pad];
        byte[] t = s.getBytes(StandardCharsets.UTF_8);
        System.arraycopy(t, 0, b, 0, t.length);
        return b;
    }

    @Test
    void emptyReadsNullThenNewestWins() throws IOException {
        FaultyStore fs = new FaultyStore("leg", 64 * 1024);
        SlotLogStore s = new SlotLogStore(fs, OFF, SLOT);
        assertNull(s.readLatest());
        for (int i = 1; i <= 5; i++) {
            s.write(rec("r" + i, 100 + i));
            assertArrayEquals(rec("r" + i, 100 + i), s.readLatest());
            // a fresh store object on the same bytes finds the same record
            assertArrayEquals(rec("r" + i, 100 + i), new SlotLogStore(fs, OFF, SLOT).readLatest());
        }
        // nothing outside the two slots was touched
        byte[] img = fs.image();
        for (int i = 0; i < img.length; i++) {
            if (i < OFF || i >= OFF + 2 * SLOT) {
                assertEquals(0, img[i], "byte " + i);
            }
        }
    }

    @Test
    void fuaWritesSurvivePowerLoss() throws IOException {
        for (int seed = 0; seed < 20; seed++) {
            FaultyStore fs = new FaultyStore("leg", 64 * 1024);
            SlotLogStore s = new SlotLogStore(fs, OFF, SLOT);
            s.write(rec("one", 3000));
            s.write(rec("two", 2000));
            FaultyStore after = fs.powerLoss(new Random(seed));
            assertArrayEquals(rec("two", 2000), new SlotLogStore(after, OFF, SLOT).readLatest());
        }
    }

    /**
     * The next record's slot image written without FUA and torn by power loss (each 4 KiB page
     * kept or dropped at random): the previous record must be returned, or the new one if
     * every page happened to arrive.
     */
    @Test
    void tornWriteFallsBackToPreviousRecord() throws IOException {
        long slot = 16384;
        int torn = 0;
        for (int seed = 0; seed < 50; seed++) {
            FaultyStore fs = new FaultyStore("leg", 64 * 1024);
            SlotLogStore s = new SlotLogStore(fs, OFF, slot);
            s.write(rec("old", 3000));
            s.write(rec("older", 3000));       // slot B, seq 2
            s.write(rec("current", 3000));     // slot A, seq 3
            fs.flush();
            // Build the image the next write (seq 4, slot B) would produce, on a scratch store.
            FaultyStore tmp = new FaultyStore("tmp", 64 * 1024);
            SlotLogStore t = new SlotLogStore(tmp, OFF, slot);
            for (int i = 0; i < 3; i++) {
                t.write(rec("x", 1));
            }
            byte[] next = new byte[15000];
            new Random(1000 + seed).nextBytes(next); // every page differs from what slot B holds
            t.write(next);
            byte[] slotB = new byte[(int) slot];
            System.arraycopy(tmp.image(), (int) (OFF + slot), slotB, 0, (int) slot);
            fs.write(OFF + slot, ByteBuffer.wrap(slotB), false); // 4 pages, not durable
            FaultyStore after = fs.powerLoss(new Random(seed));
            byte[] got = new SlotLogStore(after, OFF, slot).readLatest();
            if (!java.util.Arrays.equals(got, next)) {
                torn++;
                assertArrayEquals(rec("current", 3000), got, "seed " + seed);
            }
        }
        assertTrue(torn > 40, "most seeds tear a 4-page write, got " + torn);
    }

    @Test
    void powerLossDuringWriteSequence() throws IOException {
        // FUA writes are durable; an injected failure in the middle leaves the previous record
        FaultyStore fs = new FaultyStore("leg", 64 * 1024);
        SlotLogStore s = new SlotLogStore(fs, OFF, SLOT);
        s.write(rec("a", 500));
        fs.failWritesAfter(0);
        assertThrows(IOException.class, () -> s.write(rec("b", 500)));
        fs.failWritesAfter(-1);
        FaultyStore after = fs.powerLoss(new Random(7));
        assertArrayEquals(rec("a", 500), new SlotLogStore(after, OFF, SLOT).readLatest());
        SlotLogStore s2 = new SlotLogStore(after, OFF, SLOT);
        s2.write(rec("c", 500));
        assertArrayEquals(rec("c", 500), s2.readLatest());
    }

    @Test
    void corruptNewestSlotIsIgnored() throws IOException {
        FaultyStore fs = new FaultyStore("leg", 64 * 1024);
        SlotLogStore s = new SlotLogStore(fs, OFF, SLOT);
        s.write(rec("first", 1000));
        s.write(rec("second", 1000)); // in slot B
        for (long at : new long[] {OFF + SLOT + 3, OFF + SLOT + 9, OFF + SLOT + 17, OFF + SLOT + 21, OFF + SLOT + 500}) {
            FaultyStore copy = fs.daemonCrash();
            byte[] one = new byte[1];
            copy.read(at, ByteBuffer.wrap(one));
            one[0] ^= 0x40;
            copy.write(at, ByteBuffer.wrap(one), true);
            assertArrayEquals(rec("first", 1000), new SlotLogStore(copy, OFF, SLOT).readLatest(), "flip at " + at);
            fs = copy;
            fs.write(at, ByteBuffer.wrap(new byte[] {(byte) (one[0] ^ 0x40)}), true); // undo for the next round
        }
        // with every flip undone, the newest record is back
        SlotLogStore s3 = new SlotLogStore(fs, OFF, SLOT);
        assertArrayEquals(rec("second", 1000), s3.readLatest());
    }

    @Test
    void writeAfterCorruptSlotKeepsTheGoodOne() throws IOException {
        FaultyStore fs = new FaultyStore("leg", 64 * 1024);
        SlotLogStore s = new SlotLogStore(fs, OFF, SLOT);
        s.write(rec("first", 1000));  // A seq1
        s.write(rec("second", 1000)); // B seq2
        fs.write(OFF + SLOT + 100, ByteBuffer.wrap(new byte[] {1, 2, 3}), true); // B corrupt
        SlotLogStore s2 = new SlotLogStore(fs, OFF, SLOT);
        assertArrayEquals(rec("first", 1000), s2.readLatest());
        s2.write(rec("third", 1000)); // must go to B (the corrupt one), keeping A
        FaultyStore after = fs.powerLoss(new Random(1));
        assertArrayEquals(rec("third", 1000), new SlotLogStore(after, OFF, SLOT).readLatest());
        byte[] a = new byte[5];
        after.read(OFF + 24, ByteBuffer.wrap(a));
        assertEquals("first", new String(a, StandardCharsets.UTF_8));
    }

    @Test
    void recordTooLargeForSlot() throws IOException {
        FaultyStore fs = new FaultyStore("leg", 64 * 1024);
        SlotLogStore s = new SlotLogStore(fs, OFF, SLOT);
        s.write(rec("fits", (int) SLOT - 24));
        IOException e = assertThrows(IOException.class, () -> s.write(new byte[(int) SLOT - 23]));
        assertTrue(e.getMessage().contains("does not fit"), e.getMessage());
        assertArrayEquals(rec("fits", (int) SLOT - 24), s.readLatest());
        assertThrows(IllegalArgumentException.class, () -> new SlotLogStore(fs, 60 * 1024, SLOT));
    }
}

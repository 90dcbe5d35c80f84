package org.ublkmirror.track;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.ByteBuffer;
import java.util.HexFormat;
import java.util.UUID;

import org.junit.jupiter.api.Test;

class TrackingLogFormatTest {
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");
    static final long T0 = 1_700_000_000_000L;

    static TrackingLog sample() {
        TrackingLog l = new TrackingLog(VOL, 7, 4096, 1L << 33, 60_000);
        l.mark(3, 3, T0);
        l.mark(3, 1, T0 + 1000);
        l.setCoveredTag(42);
        return l;
    }

    static TrackingLog bigger() {
        TrackingLog l = new TrackingLog(VOL, 1, 4096, 1L << 40, 60_000);
        l.mark(0, 5000, T0);                    // becomes a run container
        l.mark((1L << 32) + 5, 2, T0 + 10);
        l.mark(1L << 39, 1, T0 + 120_000);     // second epoch
        for (int i = 0; i < 50; i++) {
            l.mark(100_000 + i * 37L, 1, T0 + 120_001);
        }
        l.setCoveredTag(-2); // u64 near the top
        return l;
    }

    @Test
    void bytesArePinned() {
        byte[] rec = TrackingLogFormat.encode(sample(), 5);
        String hex = HexFormat.of().formatHex(rec);
        String header = ""
                + "554d54524b4c4731"                   // 0 magic UMTRKLG1
                + "00000001"                           // 8 version
                + "00000058"                           // 12 header length 88
                + String.format("%016x", rec.length)   // 16 record length (checked below)
                + "00112233445566778899aabbccddeeff"   // 24 volume UUID
                + "00000007"                           // 40 object id
                + "00001000"                           // 44 block size 4096
                + "0000000200000000"                   // 48 volume blocks 2^33
                + "0000000000000005"                   // 56 sequence
                + "000000000000002a"                   // 64 covered tag 42
                + "000000000000ea60"                   // 72 epoch length 60000 ms
                + "00000001"                           // 80 epoch count
                + "00000000"                           // 84 reserved
                + "00000001"                           // 88 epoch id
                + "0000018bcfe56800"                   // 92 start T0
                + "0000018bcfe56be8"                   // 100 end T0 + 1000
                + "0000000000000003";                  // 108 cardinality
        assertEquals(header, hex.substring(0, header.length()));
        // the whole record, bitmap (portable 64-bit Roaring, little-endian inside) and CRC included
        String expected = header + PINNED_TAIL;
        assertEquals(expected, hex);
        assertEquals(88 + 32 + 27 + 4, rec.length); // 27-byte bitmap
    }

    // Checked by hand against the Roaring portable spec, and the CRC32C with an independent
    // bitwise implementation (Castagnoli polynomial 0x82F63B78).
    static final String PINNED_TAIL = ""
            + "0000001b"            // 116 bitmap length 27
            + "0100000000000000"    // 120 bitmap: u64 LE bucket count 1
            + "00000000"            //     u32 LE high 32 bits 0
            + "3b300000"            //     32-bit portable: cookie 12347 (runs), 1 container
            + "01"                  //     run-container flags
            + "0000" + "0200"       //     key 0, cardinality - 1 = 2
            + "0100" + "0300" + "0200" // one run: start 3, length - 1 = 2
            + "a5c4643f";           // 147 CRC32C over bytes 0..146

    @Test
    void roundTrip() throws Exception {
        TrackingLog a = bigger();
        byte[] rec = TrackingLogFormat.encode(a, 99);
        TrackingLog b = TrackingLogFormat.decode(rec);
        assertEquals(a.volumeUuid(), b.volumeUuid());
        assertEquals(a.objectId(), b.objectId());
        assertEquals(a.blockSize(), b.blockSize());
        assertEquals(a.volumeBlocks(), b.volumeBlocks());
        assertEquals(a.epochMillis(), b.epochMillis());
        assertEquals(-2, b.coveredTag());
        assertEquals(99, b.sequence());
        assertEquals(a.epochs(), b.epochs());
        assertEquals(a.dirty(), b.dirty());
        assertEquals(a.query(Long.MIN_VALUE, Long.MAX_VALUE), b.query(Long.MIN_VALUE, Long.MAX_VALUE));
        assertArrayEquals(rec, TrackingLogFormat.encode(b, 99), "re-encoding a decoded log gives the same bytes");
        // a reloaded log opens a new epoch with the next id
        b.mark(1, 1, T0 + 120_002);
        assertEquals(3, b.epochs().get(2).id());
    }

    @Test
    void emptyLogRoundTrips() throws Exception {
        TrackingLog a = new TrackingLog(VOL, 4096, 100);
        TrackingLog b = TrackingLogFormat.decode(TrackingLogFormat.encode(a, 1));
        assertTrue(b.isEmpty());
        assertEquals(100, b.volumeBlocks());
    }

    @Test
    void everyFlippedBitIsDetected() {
        byte[] rec = TrackingLogFormat.encode(bigger(), 3);
        for (int i = 0; i < rec.length; i++) {
            for (int bit = 0; bit < 8; bit += 3) {
                byte[] bad = rec.clone();
                bad[i] ^= (byte) (1 << bit);
                final int at = i;
                assertThrows(CorruptLogException.class, () -> TrackingLogFormat.decode(bad), "flip at byte " + at);
            }
        }
    }

    @Test
    void everyTruncationAndExtensionIsDetected() {
        byte[] rec = TrackingLogFormat.encode(bigger(), 3);
        for (int n = 0; n < rec.length; n++) {
            byte[] cut = java.util.Arrays.copyOf(rec, n);
            final int len = n;
            assertThrows(CorruptLogException.class, () -> TrackingLogFormat.decode(cut), "truncated to " + len);
        }
        CorruptLogException e = assertThrows(CorruptLogException.class,
                () -> TrackingLogFormat.decode(java.util.Arrays.copyOf(rec, rec.length - 1)));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
        assertThrows(CorruptLogException.class, () -> TrackingLogFormat.decode(java.util.Arrays.copyOf(rec, rec.length + 1)));
        assertThrows(CorruptLogException.class, () -> TrackingLogFormat.decode(new byte[0]));
    }

    /** Rewrites the CRC so that only the semantic checks can catch the damage. */
    static byte[] recrc(byte[] r) {
        ByteBuffer.wrap(r).putInt(r.length - 4, TrackingLogFormat.crc(r, 0, r.length - 4));
        return r;
    }

    @Test
    void clearMessagesForEachKind() {
        byte[] rec = TrackingLogFormat.encode(sample(), 1);

        byte[] magic = rec.clone();
        magic[0] = 'X';
        assertTrue(msg(magic).contains("bad magic"), msg(magic));

        byte[] ver = rec.clone();
        ByteBuffer.wrap(ver).putInt(TrackingLogFormat.OFF_VERSION, 2);
        assertTrue(msg(recrc(ver)).contains("version 2 is not supported"), msg(ver));

        byte[] crc = rec.clone();
        crc[TrackingLogFormat.HEADER_LENGTH + 40] ^= 0x10;
        assertTrue(msg(crc).contains("checksum mismatch"), msg(crc));

        byte[] outside = rec.clone(); // volume shrunk below the dirty blocks, CRC made valid
        ByteBuffer.wrap(outside).putLong(TrackingLogFormat.OFF_VOLUME_BLOCKS, 4);
        assertTrue(msg(recrc(outside)).contains("outside the volume"), msg(outside));

        byte[] card = rec.clone();
        ByteBuffer.wrap(card).putLong(TrackingLogFormat.HEADER_LENGTH + TrackingLogFormat.EP_CARDINALITY, 4);
        assertTrue(msg(recrc(card)).contains("header says 4"), msg(card));
    }

    static String msg(byte[] r) {
        return assertThrows(CorruptLogException.class, () -> TrackingLogFormat.decode(r)).getMessage();
    }
}

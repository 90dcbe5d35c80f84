package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.verify.VerifyReport;

import java.nio.ByteBuffer;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The resync window as an operator sees it: status shows the copies allowed in flight now, the
 * ceiling and the mode while a resync runs; the finished resync's report says what the window
 * did; a change of window or mode is taken by the next resync; and the legs end identical.
 */
class ResyncWindowStatusTest extends MirrorFixture {

    void writeWhileDetached(long blocks) throws Exception {
        m.detach();
        ByteBuffer b = ByteBuffer.allocateDirect(64 * BS);
        for (long blk = 0; blk < blocks; blk += 64) {
            b.clear();
            while (b.hasRemaining()) b.putLong(blk * 31 + b.position());
            b.flip();
            m.write(blk * BS, b, false);
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> resyncStatus(Mirror m) {
        return (Map<String, Object>) StatusReport.online(m, null, null).get("resync");
    }

    @Test
    void statusShowsTheWindowAndTheReportWhatItDid() throws Exception {
        MirrorConfig cfg = new MirrorConfig("w", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000);
        Mirror.create(cfg, 64L << 20, BS, false, null);
        m = Mirror.open(cfg, new Mirror.Options());
        m.setResyncWindow(8, true);
        writeWhileDetached(2048); // 8 MiB
        ResyncRunner r = m.attach(4L << 20, false); // 4 MiB/s: about two seconds, long enough to look at it
        Map<String, Object> seen = null;
        long end = System.currentTimeMillis() + 20_000;
        while (r.running() && System.currentTimeMillis() < end) {
            Map<String, Object> st = resyncStatus(m);
            if (st != null && st.get("window") != null && st.get("copy_bytes") != null && Boolean.TRUE.equals(st.get("running"))) {
                seen = st;
                break;
            }
            Thread.sleep(5);
        }
        assertNotNull(seen, "status never showed a running resync's window");
        assertEquals(8L, seen.get("window_max"));
        assertEquals("adaptive", seen.get("window_mode"));
        long cb = ((Number) seen.get("copy_bytes")).longValue();
        assertTrue(cb >= 64 << 10 && cb <= 1 << 20, "status shows the copies' size: " + seen);
        assertTrue(r.awaitDone(60_000), "resync ended");
        Map<String, Object> rep = r.report();
        // --resync-rate paces the copies; nothing queues on the link, so they are not cut: the
        // rate measured is the operator's, not the link's (cutting on it would only add copies)
        assertEquals(1L << 20, ((Number) rep.get("copy_bytes_high")).longValue(), "report: " + rep);
        assertEquals(1L << 20, ((Number) rep.get("copy_bytes_low")).longValue(), "a rate-limited resync was cut: " + rep);
        assertEquals("adaptive", rep.get("window_mode"));
        assertEquals(8L, rep.get("window"));
        long high = ((Number) rep.get("window_high")).longValue();
        assertTrue(high >= 1 && high <= 8, "report: " + rep);
        assertEquals(2048L * BS, ((Number) rep.get("bytes")).longValue(), "the report counts the 8 MiB copied: " + rep);

        // an operator lowers the window of a running resync: status shows it at once
        writeWhileDetached(2048);
        ResyncRunner r1 = m.attach(2L << 20, false);
        end = System.currentTimeMillis() + 20_000;
        while (r1.windowControl() == null && System.currentTimeMillis() < end) Thread.sleep(5);
        m.setResyncWindow(2, false);
        Map<String, Object> now = resyncStatus(m);
        assertTrue(r1.running(), "the resync ended before the change could be seen");
        assertEquals(2L, now.get("window"), "status: " + now);
        assertEquals(2L, now.get("window_max"));
        assertEquals("fixed", now.get("window_mode"));
        r1.cancel();
        assertTrue(r1.awaitDone(60_000));

        // the next resync takes a changed mode and window
        m.setResyncWindow(3, false);
        writeWhileDetached(1024);
        ResyncRunner r2 = m.attach(0, false);
        assertTrue(r2.awaitDone(60_000), "second resync ended");
        Map<String, Object> rep2 = r2.report();
        assertEquals("fixed", rep2.get("window_mode"));
        assertEquals(3L, rep2.get("window"));
        assertTrue(((Number) rep2.get("window_high")).longValue() <= 3, "report: " + rep2);
        assertEquals(0, m.dirtyBlocks());
        m.close();
        try (Inspect in = Inspect.open(cfg)) {
            VerifyReport v = in.verify(1 << 20);
            assertTrue(v.identical(), "legs identical after the resyncs: " + v.differing());
        }
    }
}

package org.ublkmirror.mirror;

import org.ublkmirror.resync.Extent;
import org.ublkmirror.track.DirtyRange;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.verify.VerifyReport;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What `mirrorctl verify` and `mirrorctl log` show, as ordered maps: built once here, whether the
 * daemon answers (online) or the CLI reads the legs itself (offline). Times stay in ms; the CLI
 * renders them in the terminal's time zone.
 */
public final class Reports {
    private Reports() {
    }

    public static Map<String, Object> verify(VerifyReport r, int blockSize, boolean online) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("identical", r.identical());
        m.put("online", online);
        m.put("blocks_compared", r.blocksCompared());
        m.put("regions_compared", r.regionsCompared());
        m.put("regions_mismatched", r.regionsMismatched());
        List<Object> diff = new ArrayList<>();
        for (Extent e : r.differing()) {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("start_block", e.start());
            d.put("blocks", e.count());
            d.put("offset", e.start() * blockSize);
            d.put("bytes", e.count() * blockSize);
            diff.add(d);
        }
        m.put("differing", diff);
        return m;
    }

    public static Map<String, Object> log(TrackingLog log, long since, long until, String source) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("source", source);
        m.put("block_size", (long) log.blockSize());
        m.put("dirty_blocks", log.dirtyCount());
        List<Object> ranges = new ArrayList<>();
        long in = 0;
        for (DirtyRange r : log.query(since, until)) {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("start_block", r.startBlock());
            d.put("blocks", r.blockCount());
            d.put("first_written_ms", r.firstMillis());
            d.put("last_written_ms", r.lastMillis());
            ranges.add(d);
            in += r.blockCount();
        }
        m.put("blocks_in_window", in);
        m.put("ranges", ranges);
        return m;
    }
}

package org.ublkmirror.mirror;

import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Superblock;
import org.ublkmirror.tags.Tag;
import org.ublkmirror.tags.TagTable;
import org.ublkmirror.resync.Progress;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What `mirrorctl status` shows, as an ordered map (rendered as text or JSON by the CLI, sent
 * over the control socket by the daemon): the same keys whether the mirror runs or not.
 */
public final class StatusReport {
    private StatusReport() {
    }

    static Map<String, Object> leg(String role, Leg leg, String problem, TagTable tags) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("role", role);
        if (leg == null) {
            m.put("state", "missing");
            m.put("problem", problem);
            return m;
        }
        Superblock sb = leg.superblock();
        m.put("path", leg.describe());
        m.put("state", sb.clean() ? "clean" : "active");
        m.put("leg_uuid", sb.legUuid.toString());
        m.put("generation", Long.toHexString(sb.currentGen));
        if (sb.bitmapGen != 0) m.put("bitmap_generation", Long.toHexString(sb.bitmapGen));
        m.put("superblock_seq", sb.seq);
        if (tags != null) {
            m.put("tag_journal_blocks", tags.validBlocks);
            m.put("live_tags", tags.live.size());
            Map<String, Object> wm = new LinkedHashMap<>();
            tags.watermarks.forEach((h, w) -> wm.put(Integer.toString(h), Tag.format(w)));
            m.put("watermarks", wm);
        }
        return m;
    }

    static Map<String, Object> volume(Superblock sb) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("uuid", sb.volumeUuid.toString());
        m.put("block_size", sb.blockSize);
        m.put("blocks", sb.dataBlocks);
        m.put("bytes", sb.dataBlocks * sb.blockSize);
        return m;
    }

    /** A mirror that is not running, from its legs' metadata (read-only). */
    public static Map<String, Object> offline(Inspect in) throws IOException {
        Map<String, Object> m = new LinkedHashMap<>();
        Superblock sb = in.primary.superblock();
        m.put("name", in.config.name());
        m.put("running", false);
        m.put("state", in.state());
        m.put("device", null);
        m.put("volume", volume(sb));
        List<Object> legs = new ArrayList<>();
        legs.add(leg("primary", in.primary, null, in.primaryTags()));
        legs.add(leg("secondary", in.secondary, in.secondaryProblem, in.secondaryTags()));
        m.put("legs", legs);
        long dirty = in.trackingLog().dirtyCount();
        m.put("dirty_blocks", dirty);
        m.put("dirty_bytes", dirty * sb.blockSize);
        m.put("ship_dir", in.config.shipDir() == null ? null : in.config.shipDir().toString());
        if (in.config.shipTo() != null) m.put("ship_to", in.config.shipTo().address());
        return m;
    }

    /** A running mirror. */
    public static Map<String, Object> online(Mirror mirror, String device, String frontend) {
        Map<String, Object> m = new LinkedHashMap<>();
        Superblock sb = mirror.primary().superblock();
        m.put("name", mirror.config().name());
        m.put("running", true);
        m.put("state", mirror.state().name().toLowerCase().replace('_', '-'));
        m.put("device", device);
        m.put("frontend", frontend);
        m.put("volume", volume(sb));
        List<Object> legs = new ArrayList<>();
        legs.add(leg("primary", mirror.primary(), null, null));
        Map<String, Object> s = leg("secondary", mirror.secondary(), mirror.forker().degradedReason(), null);
        s.put("online", mirror.forker().secondaryOnline());
        if (mirror.forker().degradedReason() != null) s.put("offline_reason", mirror.forker().degradedReason());
        legs.add(s);
        m.put("legs", legs);
        long dirty = mirror.dirtyBlocks();
        m.put("dirty_blocks", dirty);
        m.put("dirty_bytes", dirty * sb.blockSize);
        ResyncRunner r = mirror.resync();
        if (r != null) {
            Map<String, Object> rs = new LinkedHashMap<>();
            rs.put("running", r.running());
            rs.put("copied_blocks", r.copiedBlocks());
            rs.put("total_blocks", r.totalBlocks());
            Progress p = r.passProgress();
            if (p != null) {
                rs.put("bytes_per_second", (long) p.bytesPerSecond());
            }
            org.ublkmirror.resync.WindowControl wc = r.windowControl();
            if (wc != null) {
                rs.put("window", (long) wc.limit()); // copies allowed in flight now
                rs.put("window_max", (long) wc.max());
                rs.put("window_mode", org.ublkmirror.resync.WindowControl.modeName(wc.isAdaptive()));
                if (wc.lastCopyBytes() > 0) rs.put("copy_bytes", wc.lastCopyBytes()); // the copies' size now
            }
            if (r.failure() != null) rs.put("failure", String.valueOf(r.failure().getMessage()));
            m.put("resync", rs);
        }
        Map<String, Object> tags = new LinkedHashMap<>();
        tags.put("host_id", mirror.forker().hostId());
        tags.put("last_issued", Tag.format(mirror.forker().window().lastIssued()));
        tags.put("watermark", Tag.format(mirror.forker().window().watermark()));
        tags.put("outstanding", mirror.forker().window().outstandingCount());
        tags.put("writes", mirror.forker().writes());
        tags.put("tracked_writes", mirror.forker().trackedWrites());
        tags.put("journal_blocks_written", mirror.forker().journalBlocks());
        tags.put("journal_records", mirror.forker().journalRecords());
        tags.put("intent_regions_active", mirror.forker().activeRegions());
        m.put("tags", tags);
        // this run's outage accounting: a resync copies at most what was tracked plus the superset
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("tracked_write_blocks", mirror.trackedWriteBlocks());
        out.put("superset_blocks", mirror.supersetBlocks());
        out.put("resynced_blocks", mirror.resyncedBlocks());
        m.put("outage", out);
        List<String> ship = mirror.tracking().shipErrors();
        m.put("ship_dir", mirror.config().shipDir() == null ? null : mirror.config().shipDir().toString());
        if (ship != null && !ship.isEmpty()) m.put("ship_errors", ship);
        if (mirror.config().shipTo() != null) {
            m.put("ship_to", mirror.config().shipTo().address());
            List<Object> sh = new ArrayList<>();
            for (org.ublkmirror.track.AsyncLogStore.Status st : mirror.logShipping()) {
                Map<String, Object> x = new LinkedHashMap<>();
                x.put("target", st.target());
                x.put("queued_seq", st.queuedSeq());
                x.put("shipped_seq", st.shippedSeq());
                x.put("shipped_ms", st.shippedMillis() == 0 ? null : st.shippedMillis());
                x.put("behind", st.behind());
                x.put("error", st.error());
                if (st.error() != null) x.put("failing_since_ms", st.failingSinceMillis());
                x.put("failures", st.failures());
                sh.add(x);
            }
            m.put("log_shipping", sh);
        }
        m.put("recovery", mirror.recovery().summary());
        return m;
    }
}

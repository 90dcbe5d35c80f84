package org.ublkmirror.cli;

import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.StatusReport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "status", description = "State, device, legs, dirty blocks, resync progress, tag counts.")
final class StatusCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        MirrorConfig cfg = common.load(name);
        Map<String, Object> st;
        Map<String, Object> online = Control.tryStatus(cfg.name());
        if (online != null) {
            st = online;
        } else {
            try (Inspect in = Inspect.open(cfg)) {
                st = StatusReport.offline(in);
            }
        }
        if (json) {
            System.out.println(Json.write(st));
        } else {
            print(st);
        }
        return 0;
    }

    @SuppressWarnings("unchecked")
    static void print(Map<String, Object> st) {
        Map<String, Object> vol = (Map<String, Object>) st.get("volume");
        System.out.printf("%s: %s%s%n", st.get("name"), st.get("state"), Boolean.TRUE.equals(st.get("running")) ? ", running" : ", not running");
        if (st.get("device") != null) System.out.printf("  device       %s (%s)%n", st.get("device"), st.get("frontend"));
        System.out.printf("  volume       %s, %s blocks of %s bytes, uuid %s%n", Units.human(((Number) vol.get("bytes")).longValue()),
                vol.get("blocks"), vol.get("block_size"), vol.get("uuid"));
        for (Object o : (List<Object>) st.get("legs")) {
            Map<String, Object> l = (Map<String, Object>) o;
            StringBuilder sb = new StringBuilder();
            sb.append(String.format("  %-12s %s  %s", l.get("role"), l.getOrDefault("path", "-"), l.get("state")));
            if (l.containsKey("online")) sb.append(Boolean.TRUE.equals(l.get("online")) ? ", online" : ", offline");
            if (l.get("offline_reason") != null) sb.append(" (").append(l.get("offline_reason")).append(')');
            if (l.get("problem") != null) sb.append(" (").append(l.get("problem")).append(')');
            if (l.get("generation") != null) sb.append(", gen ").append(l.get("generation"));
            if (l.get("live_tags") != null) sb.append(", ").append(l.get("live_tags")).append(" live tag(s)");
            System.out.println(sb);
        }
        long dirty = ((Number) st.get("dirty_blocks")).longValue();
        System.out.printf("  dirty        %d block(s), %s%n", dirty, Units.human(((Number) st.get("dirty_bytes")).longValue()));
        Object r = st.get("resync");
        if (r instanceof Map<?, ?> rs) {
            System.out.printf("  resync       %s: %s of %s block(s)%s%n", Boolean.TRUE.equals(rs.get("running")) ? "running" : "done",
                    rs.get("copied_blocks"), rs.get("total_blocks"),
                    rs.get("window") != null && Boolean.TRUE.equals(rs.get("running"))
                            ? ", window " + rs.get("window") + " of " + rs.get("window_max") + " (" + rs.get("window_mode") + ")"
                            + (rs.get("copy_bytes") instanceof Number cb ? ", copies of " + Units.human(cb.longValue()) : "") : "");
        }
        if (st.get("link") instanceof Map<?, ?> ln) {
            StringBuilder sb = new StringBuilder(String.format("  link         %s, policy %s", ln.get("state"), ln.get("resync_policy")));
            if (ln.get("next_retry_ms") != null) {
                sb.append(String.format(", next %s in %d ms (attempt %s)", "reachable".equals(ln.get("state")) ? "probe" : "retry",
                        ((Number) ln.get("next_retry_ms")).longValue(), ((Number) ln.get("attempts")).longValue() + 1));
            }
            sb.append(String.format("; %s outage(s), %s reconnect(s)", ln.get("outages"), ln.get("reconnects")));
            if (ln.get("last_error") != null) sb.append("; last error: ").append(ln.get("last_error"));
            System.out.println(sb);
        }
        if (st.get("outage") instanceof Map<?, ?> o && ((Number) o.get("tracked_write_blocks")).longValue()
                + ((Number) o.get("superset_blocks")).longValue() + ((Number) o.get("resynced_blocks")).longValue() > 0) {
            System.out.printf("  outages      this run: %s block(s) tracked for writes + %s superset; %s resynced%n",
                    o.get("tracked_write_blocks"), o.get("superset_blocks"), o.get("resynced_blocks"));
        }
        Object t = st.get("tags");
        if (t instanceof Map<?, ?> tags) {
            System.out.printf("  tags         host %s, last %s, watermark %s, %s outstanding; %s writes (%s tracked), %s journal blocks%n",
                    tags.get("host_id"), tags.get("last_issued"), tags.get("watermark"), tags.get("outstanding"),
                    tags.get("writes"), tags.get("tracked_writes"), tags.get("journal_blocks_written"));
        }
        if (st.get("recovery") != null) System.out.printf("  last start   %s%n", st.get("recovery"));
        if (st.get("ship_dir") != null) System.out.printf("  log shipped  %s%n", st.get("ship_dir"));
        if (st.get("log_shipping") instanceof List<?> ships) {
            for (Object o : ships) {
                Map<String, Object> x = (Map<String, Object>) o;
                Object ms = x.get("shipped_ms");
                StringBuilder sb = new StringBuilder(String.format("  log shipped  %s: ", x.get("target")));
                if (ms == null) sb.append("nothing shipped yet");
                else sb.append("seq ").append(x.get("shipped_seq")).append(" at ").append(Units.time(((Number) ms).longValue()));
                if (Boolean.TRUE.equals(x.get("behind"))) sb.append(", seq ").append(x.get("queued_seq")).append(" waiting");
                if (x.get("error") != null) sb.append("; ERROR ").append(x.get("error"));
                System.out.println(sb);
            }
        } else if (st.get("ship_to") != null) {
            System.out.printf("  log shipped  log receiver %s%n", st.get("ship_to"));
        }
    }
}

package org.ublkmirror.cli;

import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.Reports;
import org.ublkmirror.track.TrackingLog;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "log", description = {"The tracking log: block ranges written while the secondary was away, with their times.",
        "Reads the running daemon's log, else the primary leg's persisted copy, or with --shipped the copy at the second location."})
final class LogCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--since", paramLabel = "TIME", description = "Only ranges written at or after TIME (10:02, 2026-11-21T10:02, -10m).")
    String since;

    @Option(names = "--until", paramLabel = "TIME", description = "Only ranges written at or before TIME.")
    String until;

    @Option(names = "--shipped", description = "Read the copy shipped to the mirror's --ship-dir (works without the primary).")
    boolean shipped;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    @SuppressWarnings("unchecked")
    public Integer call() throws Exception {
        MirrorConfig cfg = common.load(name);
        long now = System.currentTimeMillis();
        long from = since == null ? Long.MIN_VALUE : Units.parseTime(since, now);
        long to = until == null ? Long.MAX_VALUE : Units.parseTime(until, now);
        if (from > to) throw new IllegalArgumentException("--since is after --until; swap them");
        Map<String, Object> out = null;
        if (!shipped) {
            Map<String, String> args = new LinkedHashMap<>();
            args.put("since", Long.toString(from));
            args.put("until", Long.toString(to));
            out = Control.tryCall(cfg.name(), "log", args);
        }
        if (out == null) {
            TrackingLog log;
            if (shipped) {
                log = Inspect.shippedLog(cfg);
            } else {
                try (Inspect in = Inspect.open(cfg)) {
                    log = in.trackingLog();
                }
            }
            out = Reports.log(log, from, to, shipped ? "shipped" : "primary");
        }
        // the daemon sends times in ms; render them here, in this terminal's time zone
        for (Object o : (List<Object>) out.get("ranges")) {
            Map<String, Object> d = (Map<String, Object>) o;
            if (!d.containsKey("first_written")) {
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("start_block", d.get("start_block"));
                r.put("blocks", d.get("blocks"));
                r.put("first_written", Units.time(((Number) d.get("first_written_ms")).longValue()));
                r.put("last_written", Units.time(((Number) d.get("last_written_ms")).longValue()));
                r.put("first_written_ms", d.get("first_written_ms"));
                r.put("last_written_ms", d.get("last_written_ms"));
                d.clear();
                d.putAll(r);
            }
        }
        if (json) {
            System.out.println(Json.write(out));
        } else {
            print(out);
        }
        return 0;
    }

    @SuppressWarnings("unchecked")
    static void print(Map<String, Object> m) {
        List<Object> ranges = (List<Object>) m.get("ranges");
        System.out.printf("tracking log (%s): %s dirty block(s); %d range(s), %s block(s) in the window%n", m.get("source"),
                m.get("dirty_blocks"), ranges.size(), m.get("blocks_in_window"));
        if (!ranges.isEmpty()) System.out.printf("  %-14s %-10s %-25s %s%n", "START BLOCK", "BLOCKS", "FIRST WRITTEN", "LAST WRITTEN");
        for (Object o : ranges) {
            Map<String, Object> d = (Map<String, Object>) o;
            System.out.printf("  %-14s %-10s %-25s %s%n", d.get("start_block"), d.get("blocks"), d.get("first_written"), d.get("last_written"));
        }
    }
}

package org.ublkmirror.cli;

import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.track.DirtyRange;
import org.ublkmirror.track.TrackingLog;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.ArrayList;
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
            out = toMap(log, from, to, shipped ? "shipped" : "primary");
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

    static Map<String, Object> toMap(TrackingLog log, long from, long to, String source) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("source", source);
        m.put("block_size", log.blockSize());
        m.put("dirty_blocks", log.dirtyCount());
        List<Object> ranges = new ArrayList<>();
        long inWindow = 0;
        for (DirtyRange r : log.query(from, to)) {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("start_block", r.startBlock());
            d.put("blocks", r.blockCount());
            d.put("first_written", Units.time(r.firstMillis()));
            d.put("last_written", Units.time(r.lastMillis()));
            d.put("first_written_ms", r.firstMillis());
            d.put("last_written_ms", r.lastMillis());
            ranges.add(d);
            inWindow += r.blockCount();
        }
        m.put("blocks_in_window", inWindow);
        m.put("ranges", ranges);
        return m;
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

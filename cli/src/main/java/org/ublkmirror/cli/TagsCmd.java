package org.ublkmirror.cli;

import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.tags.Tag;
import org.ublkmirror.tags.TagRecord;
import org.ublkmirror.tags.TagTable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.Callable;

@Command(name = "tags", description = {"Show both legs' tag tables (read-only): live entries, watermarks, and how they compare.",
        "A live entry is a write not known to have reached both legs; 'mirrorctl reconcile' repairs them."})
final class TagsCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        MirrorConfig cfg = common.load(name);
        Map<String, Object> out = new LinkedHashMap<>();
        try (Inspect in = Inspect.open(cfg)) {
            TagTable p = in.primaryTags(), s = in.secondaryTags();
            out.put("primary", table(p));
            out.put("secondary", s == null ? null : table(s));
            TreeSet<Long> all = new TreeSet<>(p.live.keySet());
            if (s != null) all.addAll(s.live.keySet());
            List<Object> cmp = new ArrayList<>();
            long blocks = 0;
            for (long t : all) {
                TagRecord r = p.live.containsKey(t) ? p.live.get(t) : s.live.get(t);
                Map<String, Object> e = new LinkedHashMap<>();
                e.put("tag", Tag.format(t));
                e.put("object", r.objectId());
                e.put("start_block", r.startBlock());
                e.put("blocks", r.blockCount());
                boolean inP = p.live.containsKey(t), inS = s != null && s.live.containsKey(t);
                e.put("on", inP && inS ? "both" : inP ? "primary" : "secondary");
                cmp.add(e);
                blocks += r.blockCount();
            }
            out.put("unmatched", cmp);
            out.put("blocks_to_repair", blocks);
        }
        if (json) {
            System.out.println(Json.write(out));
            return 0;
        }
        for (String leg : new String[] {"primary", "secondary"}) {
            Map<?, ?> t = (Map<?, ?>) out.get(leg);
            if (t == null) {
                System.out.printf("%-10s unreadable%n", leg);
                continue;
            }
            System.out.printf("%-10s %s journal block(s), %s live tag(s), watermarks %s%n", leg, t.get("journal_blocks"), t.get("live_tags"), t.get("watermarks"));
        }
        List<?> cmp = (List<?>) out.get("unmatched");
        if (cmp.isEmpty()) {
            System.out.println("no live tags: every write reached both legs");
        } else {
            System.out.printf("%d live tag(s), %s block(s) to repair:%n", cmp.size(), out.get("blocks_to_repair"));
            for (Object o : cmp) {
                Map<?, ?> e = (Map<?, ?>) o;
                System.out.printf("  tag %-12s object %s blocks %s+%s on %s%n", e.get("tag"), e.get("object"), e.get("start_block"), e.get("blocks"), e.get("on"));
            }
        }
        return 0;
    }

    static Map<String, Object> table(TagTable t) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("journal_blocks", t.validBlocks);
        m.put("live_tags", t.live.size());
        Map<String, Object> wm = new LinkedHashMap<>();
        t.watermarks.forEach((h, w) -> wm.put(Integer.toString(h), Tag.format(w)));
        m.put("watermarks", wm);
        return m;
    }
}

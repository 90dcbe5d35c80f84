package org.ublkmirror.cli;

import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.Reports;
import org.ublkmirror.verify.VerifyReport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "verify", description = {"Compare the legs: checksums per region, then exact blocks. Names every differing range.",
        "Runs inside the daemon when the mirror is running (online), else on the legs directly (read-only).",
        "Exit 0 only when the legs are identical."})
final class VerifyCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--region", defaultValue = "1M", description = "Checksum region size (default ${DEFAULT-VALUE}).")
    String region;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        MirrorConfig cfg = common.load(name);
        Map<String, Object> out;
        Map<String, Object> online = Control.tryCall(cfg.name(), "verify");
        if (online != null) {
            out = online;
        } else {
            try (Inspect in = Inspect.open(cfg)) {
                VerifyReport r = in.verify(Units.parseSize(region));
                out = Reports.verify(r, in.primary.blockSize(), false);
            }
        }
        boolean identical = Boolean.TRUE.equals(out.get("identical"));
        if (json) {
            System.out.println(Json.write(out));
        } else {
            print(out);
        }
        return identical ? Mirrorctl.OK : Mirrorctl.DIFFER;
    }

    @SuppressWarnings("unchecked")
    static void print(Map<String, Object> m) {
        List<Object> diff = (List<Object>) m.get("differing");
        if (Boolean.TRUE.equals(m.get("identical"))) {
            System.out.printf("legs identical: %s blocks compared in %s regions%s%n", m.get("blocks_compared"), m.get("regions_compared"),
                    Boolean.TRUE.equals(m.get("online")) ? " (online)" : "");
            return;
        }
        System.out.printf("legs DIFFER: %d range(s) in %s of %s regions%n", diff.size(), m.get("regions_mismatched"), m.get("regions_compared"));
        for (Object o : diff) {
            Map<String, Object> d = (Map<String, Object>) o;
            long start = ((Number) d.get("start_block")).longValue(), n = ((Number) d.get("blocks")).longValue();
            System.out.printf("  blocks %d-%d (%d block(s), byte offset %s)%n", start, start + n - 1, n, d.get("offset"));
        }
    }
}

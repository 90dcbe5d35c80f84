package org.ublkmirror.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "attach", description = {"Bring the secondary back and resync the blocks in the tracking log, while the device stays in use.",
        "Refuses on split brain unless --discard-secondary."})
final class AttachCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--rate", paramLabel = "BYTES/S", description = "Resync rate limit, e.g. 50M (default: unlimited).")
    String rate;

    @Option(names = "--no-wait", description = "Return once the resync has started.")
    boolean noWait;

    @Option(names = "--discard-secondary", description = "On split brain: overwrite the secondary from the primary (full resync).")
    boolean discard;

    @Override
    public Integer call() throws Exception {
        common.load(name);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("verb", "attach");
        if (rate != null) req.put("rate", Units.parseSize(rate));
        req.put("wait", !noWait);
        req.put("discard_secondary", discard);
        Map<String, Object> res = Control.call(name, req, noWait ? null : Control.progressBar("resync"));
        if (!noWait) Control.endProgress();
        Object n = res.get("resynced_blocks");
        System.out.println(name + ": secondary attached" + (n != null ? "; resync copied " + n + " block(s), state " + res.get("state")
                : "; resync running ('mirrorctl resync " + name + " --wait' follows it)"));
        if (res.get("resync_report") instanceof Map<?, ?> r) System.out.println("  " + ResyncCmd.describe(r));
        return 0;
    }
}

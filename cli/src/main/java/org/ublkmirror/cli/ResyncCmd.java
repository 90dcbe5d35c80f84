package org.ublkmirror.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "resync", description = "Start the resync (attaching the secondary if needed), change its rate, or wait for it with progress.")
final class ResyncCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--rate", paramLabel = "BYTES/S", description = "Rate limit, e.g. 50M; 0 = unlimited. Applies to a running resync too.")
    String rate;

    @Option(names = "--wait", description = "Wait until the legs are in sync, with a progress bar.")
    boolean await;

    @Override
    public Integer call() throws Exception {
        common.load(name);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("verb", "resync");
        if (rate != null) req.put("rate", Units.parseSize(rate));
        req.put("wait", await);
        Map<String, Object> res = Control.call(name, req, await ? Control.progressBar("resync") : null);
        if (await) Control.endProgress();
        System.out.println(name + ": " + res.get("state") + ", " + res.get("dirty_blocks") + " dirty block(s)"
                + (res.get("resynced_blocks") != null ? ", resync copied " + res.get("resynced_blocks") + " block(s)" : ""));
        return 0;
    }
}

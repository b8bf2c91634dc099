(data) => { throw new Error("the run ended at resolveThenExecute"); }

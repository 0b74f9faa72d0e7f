"""Flat buckets: the optimizer state of many small cpu parameters in one contiguous buffer per state name.

Why: a NumPy ufunc call costs about a microsecond however small its array, and an Adam update is a dozen
calls. Looping over 100 parameters of a few hundred elements each is therefore ~1,200 calls per step, almost
all of it overhead. A bucket instead

1. keeps each state array (e.g. ``exp_avg``) of every member as a *view* into one flat buffer, so the
   per-parameter state that users and `state_dict()` see is still one array per parameter;
2. gathers the members' gradients and values into flat buffers with one `np.concatenate` each (a C loop);
3. runs the update once on the flat arrays (the same function that updates a single parameter);
4. copies the new values back into each parameter (`p.array[...] = view`, one cheap call per parameter).

The parameters themselves stay separate arrays: ``p.array`` is never replaced, so anything that holds it
(a NumPy array shared with `tl.from_numpy`, a tied reference) keeps seeing the updates.
"""
import numpy as np


class FlatBucket:
    """The members of one parameter group that are small cpu arrays of one dtype.

    `params` are the member parameters (in group order), `states` their state dicts; every array named in
    `names` is copied into this bucket's flat buffer for that name and replaced by a view into it.
    """

    def __init__(self, params, states, names, dtype):
        self.params = list(params)
        self.ids = tuple(map(id, params))
        self.shapes = [p.array.shape for p in params]
        self.names = tuple(names)
        self.dtype = dtype
        self.states = list(states)
        sizes = [int(np.prod(s)) for s in self.shapes]
        bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
        n = bounds[-1]
        self.P = np.empty(n, dtype)            # the members' values, gathered
        self.G = np.empty(n, dtype)            # their gradients, gathered (the update may overwrite it)
        self.T = np.empty(n, dtype)            # scratch
        spans = [(a, b, shape) for a, b, shape in zip(bounds[:-1], bounds[1:], self.shapes)]
        self.p_views = [self.P[a:b].reshape(shape) for a, b, shape in spans]
        self.flat = {}
        for name in self.names:
            buf = self.flat[name] = np.empty(n, dtype)
            for st, (a, b, shape) in zip(self.states, spans):
                view = buf[a:b].reshape(shape)
                view[...] = st[name]           # keep the values (casting if the dtype changed)
                st[name] = view

    def matches(self, params, names):
        """True when this bucket was built for exactly these parameters (same shapes) and state names."""
        if tuple(map(id, params)) != self.ids or tuple(names) != self.names:
            return False
        return all(p.array.shape == s for p, s in zip(params, self.shapes))

    def gather(self, values=True):
        """Copy the members' gradients (and, if `values`, their values) into G (and P)."""
        try:
            np.concatenate([p.grad.array.ravel() for p in self.params], out=self.G)
        except (ValueError, TypeError):
            self._check_grads()
            raise
        if values:
            np.concatenate([p.array.ravel() for p in self.params], out=self.P)

    def work(self, slot):
        """The update's work arrays (see tinylazy._update): slot 0 is the scratch T, slot 1 the gathered
        gradient G, which the update may overwrite because the bucket owns it."""
        return self.T if slot == 0 else self.G

    def scatter(self):
        """Copy the updated values in P back into each parameter's own array."""
        for p, v in zip(self.params, self.p_views):
            p.array[...] = v

    def _check_grads(self):
        for i, (p, shape) in enumerate(zip(self.params, self.shapes)):
            g = p.grad.array
            if tuple(g.shape) != shape:
                raise ValueError(f"optimizer step: parameter {i} of its group has shape {shape} but its .grad "
                                 f"has shape {tuple(g.shape)}")
            if not isinstance(g, np.ndarray):
                raise ValueError(f"optimizer step: parameter {i} of its group is on cpu but its .grad is on "
                                 f"{type(g).__module__.split('.')[0]}")

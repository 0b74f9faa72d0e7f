"""Optimizer.state_dict() and load_state_dict(): PyTorch's format, ``{"state": {index: {"step": tensor,
name: tensor, ...}}, "param_groups": [{hyperparameters..., "params": [index, ...]}]}``, indices counting the
parameters across the groups in order. State of parameters still lazy at load time waits in
``optimizer._pending`` until they have data (Optimizer._adopt_pending)."""
import numpy as np

from .. import backend
from ..nn.parameter import is_lazy
from ..tensor import Tensor


def _indexed_params(opt):
    i = 0
    for group in opt.param_groups:
        for p in group["params"]:
            yield i, p
            i += 1


def pack(opt):
    """`opt.state_dict()`: PyTorch's format, the state arrays copied."""
    groups, start = [], 0
    for group in opt.param_groups:
        packed = {k: v for k, v in group.items() if k != "params"}
        packed["params"] = list(range(start, start + len(group["params"])))
        start += len(group["params"])
        groups.append(packed)
    state = {}
    for i, p in _indexed_params(opt):
        st = opt.state.get(p)
        if st is None and p in opt._pending:
            st = opt._pending[p][1]
        if st is None:
            continue
        out = {}
        for key, value in st.items():
            if key == "step":
                if opt._export_step:
                    out[key] = Tensor(np.array(float(value), np.float32))
            elif hasattr(value, "shape"):
                out[key] = Tensor(backend.to_device(value, backend.device_of(value), copy=True))
            else:
                out[key] = value
        if out:
            state[i] = out
    return {"state": state, "param_groups": groups}


def load(opt, state_dict):
    """`opt.load_state_dict(state_dict)`: checks everything before changing anything."""
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("load_state_dict: expected a dict with 'state' and 'param_groups' "
                         "(what optimizer.state_dict() returns)")
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(f"load_state_dict: the loaded state dict has {len(saved_groups)} parameter "
                         f"group(s), but this optimizer has {len(opt.param_groups)}")
    id_map = {}
    for gi, (group, saved) in enumerate(zip(opt.param_groups, saved_groups)):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"load_state_dict: parameter group {gi} of the loaded state dict has "
                             f"{len(saved['params'])} parameter(s), but this optimizer's group {gi} has "
                             f"{len(group['params'])}")
        for index, p in zip(saved["params"], group["params"]):
            id_map[int(index)] = p
    new_state, pending = {}, {}
    for key, entry in state_dict["state"].items():
        index = int(key)
        if index not in id_map:
            raise ValueError(f"load_state_dict: the state holds parameter index {index}, which is in none "
                             f"of the loaded parameter groups (indices {sorted(id_map)})")
        p = id_map[index]
        entry = import_entry(entry)
        if is_lazy(p):
            pending[p] = (index, entry)
        else:
            new_state[p] = cast_entry(p, index, entry)
    for group, saved in zip(opt.param_groups, saved_groups):
        params = group["params"]
        group.clear()
        group.update({k: v for k, v in saved.items() if k != "params"})
        group["params"] = params
    opt.state, opt._pending = new_state, pending
    opt._forget_plans()


def import_entry(entry):
    """A loaded state entry as raw arrays and an int step."""
    out = {}
    for key, value in entry.items():
        if isinstance(value, Tensor):
            value = value.array
        if key == "step":
            value = int(round(float(value.item() if hasattr(value, "item") else value)))
        if value is not None:          # PyTorch may store momentum_buffer=None: same as absent
            out[key] = value
    if "step" not in out:            # PyTorch's SGD saves only momentum buffers: they have seen a step
        out["step"] = 1 if any(hasattr(v, "shape") for v in out.values()) else 0
    return out


def cast_entry(p, index, entry):
    """A loaded entry's arrays copied to the parameter's device and floating dtype, shapes checked."""
    d = p.array
    dev = backend.device_of(d)
    out = {}
    for key, value in entry.items():
        if hasattr(value, "shape"):
            if tuple(value.shape) != tuple(d.shape):
                raise ValueError(f"load_state_dict: state {key!r} of parameter {index} has shape "
                                 f"{tuple(value.shape)}, but the parameter has shape {tuple(d.shape)}")
            dtype = d.dtype if value.dtype.kind == "f" else None
            value = backend.to_device(value, dev, dtype=dtype, copy=True)
        out[key] = value
    return out

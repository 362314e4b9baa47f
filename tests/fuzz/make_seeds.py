"""Writes the seed corpora of tests/fuzz/corpus/ (run from the repository root with Debian's
/usr/bin/python3; the seeds are committed, so this is only needed to remake them). Crashers
found by fuzzing are added to the corpora by hand, beside these seeds, and are not made here.

config/: the shipped configs and test fixtures, some followed by NUL-separated --set overrides.
data/:   first byte = the format index of fuzz_data.c, then the file ("#LABELS#" then labels).
hdf5/:   first byte = the spec form of fuzz_hdf5.c, then an HDF5 file written by h5py."""
import glob, gzip, io, os, struct

import h5py
import numpy as np

C = 'tests/fuzz/corpus/'
MARK = b'#LABELS#'


def put(name, data):
    with open(C + name, 'wb') as f:
        f.write(data)


def main():
    for d in ('config', 'data', 'hdf5'):
        os.makedirs(C + d, exist_ok=True)
    for p in sorted(glob.glob('configs/*.yaml')):
        put('config/' + os.path.basename(p)[:-5], open(p, 'rb').read())
    for p in sorted(glob.glob('tests/fixtures/config/*.yaml')):
        put('config/fixture-' + os.path.basename(p)[:-5], open(p, 'rb').read())
    demo = open('configs/demo.yaml', 'rb').read()
    put('config/sets-lr-margin', demo + b'\0train.lr=3e-4\0loss.margin=0.1')
    put('config/sets-list-map',
        demo + b'\0model.hidden=[256,128]\0loss.quantization={weight: 0.1}\0data.test=')
    put('config/sets-bad', demo + b'\0model.hiden=3\0train=5')

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 4, 4)).astype(np.uint8)
    lab = np.array([0, 2, 1], np.uint8)
    x = rng.normal(size=(3, 2)).astype(np.float32)

    def idx(a):
        return bytes([0, 0, 8, a.ndim]) + b''.join(struct.pack('>I', s) for s in a.shape) + \
            a.tobytes()

    def npy(a):
        f = io.BytesIO()
        np.save(f, a)
        return f.getvalue()

    def vecs(a, dtype):
        return b''.join(struct.pack('<i', a.shape[1]) + r.astype(dtype).tobytes() for r in a)

    put('data/idx', b'\0' + idx(img) + MARK + idx(lab))
    put('data/idx-nolabels', b'\0' + idx(img))
    put('data/idx-gz', b'\1' + idx(img) + MARK + idx(lab))
    put('data/idx-gz-raw', b'\2' + gzip.compress(idx(img), mtime=0) + MARK +
        gzip.compress(idx(lab), mtime=0))
    put('data/npy-f4-labels', b'\3' + npy(x) + MARK + npy(np.array([1, 0, 1], np.int64)))
    put('data/npy-f8', b'\3' + npy(x.astype(np.float64)) + MARK + npy(np.array([1, 0, 1], np.int32)))
    put('data/npy-u1', b'\3' + npy(img.reshape(3, 16)))
    put('data/fvecs', b'\4' + vecs(x, np.float32))
    put('data/ivecs', b'\5' + vecs(img[:, 0, :], np.int32))
    put('data/bvecs', b'\6' + vecs(img[:, 0, :], np.uint8))
    put('data/csv', b'\7' + b'f1,f2,label\n0.5,1e-3,1\n-2,3,0\n\n4, 5 ,2\n')
    put('data/csv-bom', b'\7' + b'\xef\xbb\xbf1,2,3\r\n4,5,6\r\n')

    def h5(build):
        f = io.BytesIO()
        with h5py.File(f, 'w') as h:
            build(h)
        return f.getvalue()

    def xy(h):
        h['X'] = x
        h['y'] = np.array([0, 1, 1], np.int64)

    def u8(h):
        h['X'] = img.reshape(3, 16)

    def pairs(h):
        h['anchor'] = x
        h['positive'] = x[:, :1].astype(np.float64)

    def ann(h):
        h['train'] = x
        h['test'] = x[:2]

    def group(h):
        h['g/X'] = x
        h['g/y'] = np.array([[2], [0], [1]], np.int32)

    def chunked(h):
        h.create_dataset('X', data=x, chunks=(1, 2), compression='gzip')

    for name, build, form in [('xy', xy, 0), ('u8', u8, 1), ('pairs', pairs, 0), ('ann', ann, 0),
                              ('ann-test', ann, 2), ('group', group, 3),
                              ('chunked-gzip', chunked, 0)]:
        put('hdf5/' + name, bytes([form]) + h5(build))


main()

import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';

/**
 * Gradient kernels the wasm backend lacks, composed from kernels it has.
 *
 * tfjs-backend-wasm 4.22 ships no Conv2DBackpropFilter, so any conv net fails at its first
 * backward pass there. The filter gradient is itself a convolution with the batch and channel
 * roles swapped:
 *   dW[kh, kw, ci, co] = sum_{b, oy, ox} x[b, oy*s + kh - pt, ox*s + kw - pl, ci] * dy[b, oy, ox, co]
 * Read x as a batch of Cin images with B channels ([Cin, H, W, B]) and dy as a filter of spatial
 * size OH x OW with B input and Cout output channels ([OH, OW, B, Cout]); a stride-1 convolution
 * with dilation s (the forward stride) then yields [Cin, KH, KW, Cout]. XNNPACK runs that
 * convolution natively, so the gradient costs what the forward conv costs.
 *
 * The kernel calls the backend's own kernel functions directly (not tf ops) so nothing lands on
 * the gradient tape or in the engine's tensor bookkeeping; intermediates are freed here.
 */

type BackendWithDisposal = { disposeData(dataId: object, force?: boolean): boolean };

function runBackendKernel(
  name: string,
  backendName: string,
  backend: unknown,
  inputs: Record<string, TensorInfo>,
  attrs: NamedAttrMap,
): TensorInfo {
  const kernel = tf.getKernel(name, backendName);
  if (!kernel) throw new Error(`kernel ${name} is not registered for backend ${backendName}`);
  const out = kernel.kernelFunc({ inputs, attrs, backend: backend as never });
  if (Array.isArray(out)) throw new Error(`kernel ${name} returned several outputs`);
  return out as TensorInfo;
}

type Pad =
  'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

/** Build the Conv2DBackpropFilter kernel for `backendName` out of its Transpose, Slice and Conv2D kernels. */
export function conv2dBackpropFilterKernel(backendName: string): KernelConfig {
  const kernelFunc: KernelFunc = ({ inputs, backend, attrs }) => {
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
      strides: [number, number] | number;
      pad: Pad;
      dataFormat: 'NHWC' | 'NCHW';
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
      filterShape: [number, number, number, number];
    };
    if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter: only NHWC (channelsLast) is supported');
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filterShape,
      strides,
      1,
      pad,
      dimRoundingMode,
      false,
      'channelsLast',
    );
    const [, H, W] = x.shape;
    const {
      filterHeight: KH,
      filterWidth: KW,
      outHeight: OH,
      outWidth: OW,
      strideHeight: sh,
      strideWidth: sw,
    } = info;
    const pt = info.padInfo.top;
    const pl = info.padInfo.left;
    // Padded extent the swapped convolution needs so that its output is exactly KH x KW.
    let pb = KH + (OH - 1) * sh - H - pt;
    let pr = KW + (OW - 1) * sw - W - pl;
    const disposer = backend as unknown as BackendWithDisposal;
    const temps: TensorInfo[] = [];
    let xT = runBackendKernel('Transpose', backendName, backend, { x }, { perm: [3, 1, 2, 0] });
    temps.push(xT);
    if (pb < 0 || pr < 0) {
      // A strided forward conv that never reached the last rows/cols: crop them instead of padding.
      const keepH = H + Math.min(pb, 0);
      const keepW = W + Math.min(pr, 0);
      xT = runBackendKernel(
        'Slice',
        backendName,
        backend,
        { x: xT },
        { begin: [0, 0, 0, 0], size: [xT.shape[0], keepH, keepW, xT.shape[3]] },
      );
      temps.push(xT);
      pb = Math.max(pb, 0);
      pr = Math.max(pr, 0);
    }
    const dyT = runBackendKernel('Transpose', backendName, backend, { x: dy }, { perm: [1, 2, 0, 3] });
    temps.push(dyT);
    const swapped = runBackendKernel('Conv2D', backendName, backend, { x: xT, filter: dyT }, {
      strides: [1, 1],
      pad: [
        [0, 0],
        [pt, pb],
        [pl, pr],
        [0, 0],
      ],
      dataFormat: 'NHWC',
      dilations: [sh, sw],
      dimRoundingMode: undefined as unknown as string,
    } as unknown as NamedAttrMap);
    temps.push(swapped);
    const dW = runBackendKernel('Transpose', backendName, backend, { x: swapped }, { perm: [1, 2, 0, 3] });
    for (const t of temps) disposer.disposeData(t.dataId, true);
    return dW;
  };
  return { kernelName: 'Conv2DBackpropFilter', backendName, kernelFunc };
}

/** Kernels training needs that `backendName` lacks; returns the names registered now. */
export function registerTrainingKernels(backendName: string): string[] {
  const registered: string[] = [];
  if (!tf.getKernel('Conv2DBackpropFilter', backendName)) {
    tf.registerKernel(conv2dBackpropFilterKernel(backendName));
    registered.push('Conv2DBackpropFilter');
  }
  return registered;
}

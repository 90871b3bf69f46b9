import * as ort from 'onnxruntime-node';
import { buildOnnxModel } from '../src/onnx-model';
async function main(){
  const gemm = buildOnnxModel({name:'g', inputs:[{name:'A',shape:['D','N']},{name:'B',shape:['D','S']}], outputs:[{name:'Y',shape:['N','S']}],
    nodes:[{op:'Gemm',inputs:['A','B'],outputs:['Y'],attributes:[{name:'transA',i:1}]}]});
  const s = await ort.InferenceSession.create(gemm, {intraOpNumThreads:2});
  console.log(s.inputNames, s.outputNames);
  const A=new Float32Array([1,2,3,4,5,6]); const B=new Float32Array([1,0,0,1,1,1]);
  const out=await s.run({A:new ort.Tensor('float32',A,[3,2]),B:new ort.Tensor('float32',B,[3,2])});
  console.log(out.Y.data, out.Y.dims);
  const sabA=new Float32Array(new SharedArrayBuffer(24)); sabA.set(A);
  try { const o2=await s.run({A:new ort.Tensor('float32',sabA,[3,2]),B:new ort.Tensor('float32',B,[3,2])}); console.log('sab ok', o2.Y.data);} catch(e){console.log('sab fail',e)}
}
main();

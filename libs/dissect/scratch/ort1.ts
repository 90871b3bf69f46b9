import * as ort from 'onnxruntime-node';
import { buildOnnxModel } from '/work/main/libs/dissect/src/onnx-model';
async function main(){
  const gemm = buildOnnxModel({name:'g', inputs:[{name:'A',shape:['D','N']},{name:'B',shape:['D','S']}], outputs:[{name:'Y',shape:['N','S']}],
    nodes:[{op:'Gemm',inputs:['A','B'],outputs:['Y'],attributes:[{name:'transA',i:1}]}]});
  const s = await ort.InferenceSession.create(gemm, {intraOpNumThreads:2});
  const D=5000,N=512,S=20000;
  const sab=new ArrayBuffer(D*S*4); const P=new Float32Array(sab); for(let i=0;i<P.length;i++)P[i]=(i%97)/97;
  const Q=new Float32Array(D*N).fill(0.5);
  for(let rep=0;rep<3;rep++){const t=performance.now();
  const out=await s.run({A:new ort.Tensor('float32',Q,[D,N]),B:new ort.Tensor('float32',P,[D,S])});
  console.log('gemm ms',performance.now()-t, (out.Y.data as Float32Array)[5], out.Y.dims);}
  const sm = buildOnnxModel({name:'sm', inputs:[{name:'P',shape:['D','S']},{name:'a',shape:[1]}], outputs:[{name:'Y',shape:['D','S']}],
    nodes:[{op:'Mul',inputs:['P','a'],outputs:['aP']},{op:'Softmax',inputs:['aP'],outputs:['Y'],attributes:[{name:'axis',i:1}]}]});
  const s2 = await ort.InferenceSession.create(sm, {intraOpNumThreads:1});
  const outSab=new SharedArrayBuffer(2500*S*4);
  for(let rep=0;rep<3;rep++){const t=performance.now();
  const pre=new ort.Tensor('float32',new Float32Array(outSab),[2500,S]);
  const out=await s2.run({P:new ort.Tensor('float32',P.subarray(0,2500*S),[2500,S]), a:new ort.Tensor('float32',new Float32Array([10]),[1])},{Y:pre});
  console.log('softmax half ms',performance.now()-t, out.Y===pre, new Float32Array(outSab)[3], (out.Y.data as Float32Array)[3]);}
}
main();
